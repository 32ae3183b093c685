"""Details of the local GraceDB server's API over real HTTP: encodings,
error bodies, queries and paging, ids, signoffs, permissions, auth."""

import base64
import datetime
import json
import os

import pytest
import requests
from gracedb_sdk import Client
from ligo.gracedb.exceptions import HTTPError as LigoHTTPError
from ligo.gracedb.rest import GraceDb

from gwcelery.gracedb_server import GraceDbServer
from gwcelery.gracedb_server.identifiers import utc_to_gps

from .conftest import DATA_DIR

COINC = os.path.join(DATA_DIR, 'gracedb', 'coinc.xml')
GCN = os.path.join(DATA_DIR, 'gcn')


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def json_event(gpstime, far=1e-9, **extra):
    return json.dumps({'gpstime': gpstime, 'far': far,
                       'instruments': 'H1,L1', **extra}).encode()


@pytest.fixture
def client(gracedb_server):
    return Client(gracedb_server.url, force_noauth=True)


@pytest.fixture
def url(gracedb_server):
    return gracedb_server.url


def create(client, gpstime=1e9, group='CBC', pipeline='gstlal',
           search='AllSky', **kwargs):
    return client.events.create(
        filename='event.json', filecontents=json_event(gpstime, **kwargs),
        group=group, pipeline=pipeline, search=search)


def superevent(client, graceid, t_0):
    return client.superevents.create(
        t_start=t_0 - 1, t_0=t_0, t_end=t_0 + 1, preferred_event=graceid)


# --- root and routing -------------------------------------------------------


@pytest.mark.parametrize('prefix', ['', 'v1/', 'v2/'])
def test_root_document(url, prefix):
    root = requests.get(url + prefix).json()
    assert root['links']['events'] == url + prefix + 'events/'
    assert root['templates']['superevent-detail-template'] == \
        url + prefix + 'superevents/{superevent_id}/'
    assert root['superevent-categories'] == {
        'P': 'Production', 'T': 'Test', 'M': 'MDC'}
    assert root['voevent-types']['PR'] == 'preliminary'
    assert root['instruments']['H1'] == 'LHO'
    assert {'CBC', 'Burst', 'External', 'Test'} <= set(root['groups'])
    assert {'gstlal', 'CWB', 'Fermi'} <= set(root['pipelines'])
    assert {'EM_READY', 'DQV', 'ADVREQ'} <= set(root['labels'])
    # The templates are real routes.
    for template in root['templates'].values():
        assert template.startswith(url + prefix)


def test_trailing_slash_is_optional(client, url):
    graceid = create(client)['graceid']
    for path in (f'events/{graceid}', f'events/{graceid}/',
                 f'events/{graceid}/log', f'events/{graceid}/log/',
                 'superevents', 'superevents/', 'v2', 'v2/'):
        assert requests.get(url + path).status_code == 200, path


# --- errors -----------------------------------------------------------------


def test_error_bodies(client, url):
    graceid = create(client)['graceid']
    sid = superevent(client, graceid, 1e9)['superevent_id']
    patch = {'t_0': 1e9}
    for prefix, body in (('', '"Request would not modify the superevent"'),
                         ('v1/', '"Request would not modify the superevent"'),
                         ('v2/', '{"error": "Request would not modify the '
                          'superevent"}')):
        response = requests.patch(f'{url}{prefix}superevents/{sid}/',
                                  data=patch)
        assert response.status_code == 400
        assert response.text == body
    requests.post(f'{url}superevents/{sid}/labels/', data={'name': 'DQV'})
    response = requests.post(f'{url}superevents/{sid}/labels/',
                             data={'name': 'DQV'})
    assert (response.status_code, response.json()) == (
        400, 'The fields superevent, name must make a unique set.')
    response = requests.post(f'{url}v2/superevents/{sid}/labels/',
                             data={'name': 'DQV'})
    assert response.json() == {
        'error': f'Label DQV already applied to superevent {sid}'}
    other = create(client)['graceid']
    superevent(client, other, 1e9 + 1000)
    response = requests.post(f'{url}superevents/{sid}/events/',
                             data={'event': other})
    assert (response.status_code, response.json()) == (
        400, f'Event {other} is already assigned to a Superevent')
    assert requests.get(f'{url}events/G9999').status_code == 404
    assert requests.get(f'{url}v2/events/G9999').json() == {
        'error': 'Event G9999 does not exist.'}
    response = requests.get(f'{url}events/{graceid}/files/nothing.txt')
    assert (response.status_code, response.json()) == (
        404, 'File nothing.txt not found')
    assert requests.delete(
        f'{url}events/{graceid}/labels/DQV').status_code == 404
    assert requests.get(f'{url}no/such/route').status_code == 404
    assert requests.delete(f'{url}events/').status_code == 405
    for response in (requests.post(f'{url}superevents/', json=[1]),
                     requests.post(f'{url}superevents/', data='{',
                                   headers={'Content-Type':
                                            'application/json'}),
                     requests.post(f'{url}superevents/', data={'t_0': 'x'}),
                     requests.get(f'{url}superevents/',
                                  params={'query': 'far <'}),
                     requests.get(f'{url}superevents/',
                                  params={'sort': 'nonsense'})):
        assert response.status_code == 400
        assert 'Traceback' not in response.text


def test_ligo_gracedb_raises_with_v2_body(gracedb_server):
    client = GraceDb(gracedb_server.url, api_version='v2', force_noauth=True)
    with pytest.raises(LigoHTTPError) as excinfo:
        client.event('G1234')
    assert excinfo.value.response.status_code == 404
    assert json.loads(excinfo.value.message) == {
        'error': 'Event G1234 does not exist.'}


def test_malformed_coinc_leaves_nothing(gracedb_server, client, url):
    files_dir = os.path.join(gracedb_server.data_dir, 'files')
    for bad in (read(COINC)[:20000], b'<LIGO_LW></LIGO_LW>', b'junk'):
        response = requests.post(
            url + 'events/', data={'group': 'CBC', 'pipeline': 'gstlal'},
            files={'eventFile': ('coinc.xml', bad)})
        assert response.status_code == 400
        assert response.json().startswith(('Malformed coinc.xml',
                                           'Unrecognised event file'))
    assert requests.get(url + 'events/').json()['numRows'] == 0
    assert os.listdir(files_dir) == []
    db = gracedb_server.store.db
    for table in ('events', 'logs', 'files', 'outbox'):
        assert db.execute(f'SELECT COUNT(*) FROM {table}').fetchone()[0] == 0
    # The counter did not move either.
    assert create(client)['graceid'] == 'G0001'


# --- encodings --------------------------------------------------------------


@pytest.mark.parametrize('encoding', ['repeated', 'json-array', 'comma',
                                      'json-body'])
def test_list_fields_in_every_spelling(client, url, encoding):
    graceids = [create(client, 1e9 + i)['graceid'] for i in range(3)]
    labels = ['DQOK', 'EM_READY']
    tags = ['sky_loc', 'public']
    fields = {'t_start': 1e9 - 1, 't_0': 1e9, 't_end': 1e9 + 3,
              'preferred_event': graceids[0], 'category': 'P'}
    if encoding == 'repeated':
        data = [*fields.items(), *(('events', g) for g in graceids[1:]),
                *(('labels', label) for label in labels)]
        response = requests.post(url + 'superevents/', data=data)
        log_data = {'data': [('comment', 'x'), *(('tagname', t)
                                                  for t in tags)]}
    elif encoding == 'json-array':
        data = {**fields, 'events': json.dumps(graceids[1:]),
                'labels': json.dumps(labels)}
        response = requests.post(url + 'superevents/', data=data)
        log_data = {'data': {'comment': 'x', 'tagname': json.dumps(tags)}}
    elif encoding == 'comma':
        data = {**fields, 'events': ','.join(graceids[1:]),
                'labels': ','.join(labels)}
        response = requests.post(url + 'superevents/', data=data)
        log_data = {'data': {'comment': 'x', 'tagname': ','.join(tags)}}
    else:
        data = {**fields, 'events': graceids[1:], 'labels': labels}
        response = requests.post(url + 'superevents/', json=data)
        log_data = {'json': {'comment': 'x', 'tagname': tags}}
    assert response.status_code == 201, response.text
    created = response.json()
    assert created['labels'] == labels
    assert sorted(created['gw_events']) == sorted(graceids)
    sid = created['superevent_id']
    log = requests.post(f'{url}superevents/{sid}/logs/', **log_data).json()
    assert log['tag_names'] == tags
    log = requests.post(f'{url}superevents/{sid}/logs/',
                        files={'upload': ('a.txt', b'a')},
                        data=log_data.get('data') or {
                            'comment': 'x', 'tagname': tags}).json()
    assert log['tag_names'] == tags


def test_event_upload_multipart_fields(url):
    response = requests.post(
        url + 'events/',
        data=[('group', 'CBC'), ('pipeline', 'gstlal'), ('search', 'AllSky'),
              ('offline', 'True'), ('labels', 'INJ'), ('labels', 'DQV'),
              ('content_id', 'ignored'), ('replay_id', 'ignored')],
        files={'eventFile': ('coinc.xml', read(COINC))})
    assert response.status_code == 201
    event = response.json()
    assert event['offline'] is True
    assert event['labels'] == ['INJ', 'DQV']
    assert event['warnings'] == []
    assert response.headers['Location'] == event['links']['self']


# --- ids --------------------------------------------------------------------


def test_graceid_prefixes(client):
    assert create(client)['graceid'] == 'G0001'
    assert create(client, group='Test')['graceid'] == 'T0002'
    assert create(client, search='MDC')['graceid'] == 'M0003'
    assert create(client, group='External', pipeline='Fermi',
                  search='GRB')['graceid'] == 'E0004'
    assert create(client, pipeline='HardwareInjection')['graceid'] == \
        'H0005'
    # The prefix is checked on lookup; G matches any.
    assert client.events['T0002'].get()['graceid'] == 'T0002'
    assert client.events['G0002'].get()['graceid'] == 'T0002'
    with pytest.raises(requests.HTTPError):
        client.events['M0002'].get()


def test_superevent_ids_count_per_date_and_category(client):
    t_0 = utc_to_gps(datetime.datetime(2020, 1, 1, 0, 0, 0, 500000,
                                       tzinfo=datetime.timezone.utc))
    ids = []
    for i in range(28):
        graceid = create(client, t_0 + 10 * i)['graceid']
        ids.append(superevent(client, graceid, t_0 + 10 * i)['superevent_id'])
    assert ids[:3] == ['S200101a', 'S200101b', 'S200101c']
    assert ids[25:] == ['S200101z', 'S200101aa', 'S200101ab']
    test_event = create(client, t_0, group='Test')['graceid']
    assert superevent(client, test_event, t_0)['superevent_id'] == \
        'TS200101a'
    mdc_event = create(client, t_0 - 1, search='MDC')['graceid']
    assert superevent(client, mdc_event, t_0 - 1)['superevent_id'] == \
        'MS191231a'


def test_superevent_rules(client, url):
    g1 = create(client)['graceid']
    t1 = create(client, group='Test')['graceid']
    e1 = create(client, group='External', pipeline='Fermi',
                search='GRB')['graceid']
    # Category must match; an external event cannot be preferred.
    response = requests.post(url + 'superevents/', json={
        't_start': 1, 't_0': 1e9, 't_end': 2e9, 'preferred_event': g1,
        'category': 'P', 'events': [t1]})
    assert response.status_code == 400
    response = requests.post(url + 'superevents/', json={
        't_start': 1, 't_0': 1e9, 't_end': 2e9, 'preferred_event': e1,
        'category': 'P'})
    assert response.status_code == 400
    sid = superevent(client, g1, 1e9)['superevent_id']
    client.superevents[sid].add(e1)
    got = client.superevents[sid].get()
    assert (got['gw_events'], got['em_events']) == ([g1], [e1])
    # The preferred event cannot be removed; another member can.
    response = requests.delete(f'{url}superevents/{sid}/events/{g1}')
    assert response.status_code == 400
    client.superevents[sid].remove(e1)
    assert client.events[e1].get()['superevent'] is None
    assert requests.delete(
        f'{url}superevents/{sid}/events/{e1}').status_code == 404
    # Patching the preferred event to a new event adds it.
    g2 = create(client)['graceid']
    client.superevents.update(sid, preferred_event=g2, t_end=1e9 + 5)
    got = client.superevents[sid].get()
    assert (got['preferred_event'], got['gw_events'], got['t_end']) == \
        (g2, [g2, g1], 1e9 + 5)
    # Pipeline-preferred events, one per pipeline.
    client.superevents[sid].pipeline_preferred_events.add(g1)
    client.superevents[sid].pipeline_preferred_events.add(g2)
    assert client.superevents[sid].pipeline_preferred_events.get() == [g2]
    assert list(client.superevents[sid].get()[
        'pipeline_preferred_events']) == ['gstlal']
    client.superevents[sid].pipeline_preferred_events.remove(g2)
    assert client.superevents[sid].pipeline_preferred_events.get() == []


# --- queries ----------------------------------------------------------------


def test_superevent_queries_and_paging(client):
    sids = {}
    for i, (group, search) in enumerate((('CBC', 'AllSky'), ('Test', None),
                                         ('CBC', 'MDC'))):
        graceid = create(client, 1e9 + 100 * i, group=group,
                         search=search)['graceid']
        sids[group, search] = superevent(client, graceid,
                                         1e9 + 100 * i)['superevent_id']
    production = sids['CBC', 'AllSky']

    def search(query, **kwargs):
        return [s['superevent_id'] for s in
                client.superevents.search(query=query, **kwargs)]

    assert search('') == [production]
    assert search(f'{1e9 - 1} .. {1e9 + 1}') == [production]
    assert search('category: MDC 1000000100 .. 1000000300') == \
        [sids['CBC', 'MDC']]
    assert search('t_0: 1000000050 .. 1000000150 Test') == \
        [sids['Test', None]]
    mdc_event = client.superevents[sids['CBC', 'MDC']].get()[
        'preferred_event']
    assert search(f'MDC event: {mdc_event}') == [sids['CBC', 'MDC']]
    assert search(f'id: {production}') == [production]
    assert search(production) == [production]
    client.superevents[production].labels.create('EM_READY')
    assert search('EM_READY & ~DQV') == [production]
    assert search('EM_READY & DQV') == []
    assert search('DQV | EM_READY') == [production]
    assert search('label: EM_READY') == [production]
    assert search('is_gw: false') == [production]
    assert search('far < 1e-8') == [production]
    assert search('far > 1e-8') == []

    # Paging: more than one page, in the order asked for.
    for i in range(25):
        graceid = create(client, 2e9 + i)['graceid']
        superevent(client, graceid, 2e9 + i)
    found = search('2000000000 .. 2000000100', sort='-t_0')
    assert len(found) == 25
    t_0s = [s['t_0'] for s in client.superevents.search(
        query='2000000000 .. 2000000100', sort='-t_0')]
    assert t_0s == sorted(t_0s, reverse=True)
    page = client.session.get(
        client.superevents.url,
        params={'query': '2000000000 .. 2000000100', 'count': 10}).json()
    assert page['numRows'] == 25
    assert len(page['superevents']) == 10
    assert 'start=10' in page['links']['next']
    assert page['links']['previous'] is None


def test_event_queries(client):
    cbc = create(client, 1e9)['graceid']
    burst = create(client, 1e9 + 1, group='Burst', pipeline='CWB',
                   search='AllSky')['graceid']
    test = create(client, 1e9 + 2, group='Test')['graceid']
    mdc = create(client, 1e9 + 3, search='MDC')['graceid']
    fermi = client.events.create(
        filename='gcn.xml', group='External', pipeline='Fermi', search='GRB',
        filecontents=read(os.path.join(GCN, 'fermi_grb_gcn.xml')))
    assert fermi['extra_attributes']['GRB']['trigger_id'] == '548848711'
    assert fermi['extra_attributes']['GRB']['ra'] == pytest.approx(140.05)

    def search(query):
        return sorted(e['graceid'] for e in client.events.search(query=query))

    assert search('') == sorted([cbc, burst, fermi['graceid']])
    assert search('test') == [test]  # the group, and Test is not excluded
    assert search('group: CBC Test') == sorted([cbc, test])
    assert search('CBC') == [cbc]
    assert search('group: CBC Burst') == sorted([cbc, burst])
    assert search('pipeline: CWB') == [burst]
    assert search('999999999 .. 1000000001.5') == sorted([cbc, burst])
    assert search('gpstime: 1000000002 .. 1000000004 Test MDC') == []
    assert search('1000000002 .. 1000000004 MDC') == [mdc]
    assert search('group: External pipeline: Fermi '
                  'grbevent.trigger_id = "548848711"') == [fermi['graceid']]
    assert search('group: External pipeline: Fermi '
                  'grbevent.trigger_id = "1"') == []
    assert search(f'{cbc} .. {burst}') == sorted([cbc, burst])
    sid = superevent(client, cbc, 1e9)['superevent_id']
    client.superevents[sid].add(burst)
    assert search(f'superevent: {sid} group: CBC Burst') == \
        sorted([cbc, burst])
    assert search('is_preferred_event: true') == [cbc]
    assert search('in_superevent: false') == [fermi['graceid']]
    assert search('far < 1e-8 & ~INJ') == sorted([cbc, burst])
    assert search('ifos: H1,L1 CBC') == [cbc]
    client.events[fermi['graceid']].labels.create('SNEWS')
    assert search('SNEWS') == []  # the pipeline
    assert search('label: SNEWS') == [fermi['graceid']]


def test_grb_event_update(client, gracedb_server):
    graceid = client.events.create(
        filename='gcn.xml', group='External', pipeline='Swift', search='GRB',
        filecontents=read(os.path.join(GCN, 'swift_grb_gcn.xml')))['graceid']
    ligo = GraceDb(gracedb_server.url, force_noauth=True)
    ligo.update_grbevent(graceid, ra=10.5, dec=-20.25, error_radius=3,
                         t90=2.5, designation='GRB 220907A')
    grb = client.events[graceid].get()['extra_attributes']['GRB']
    assert (grb['ra'], grb['dec'], grb['error_radius'], grb['T90'],
            grb['designation'], grb['trigger_id']) == (
        10.5, -20.25, 3, 2.5, 'GRB 220907A', '1123129')
    with pytest.raises(LigoHTTPError):  # nothing changes
        ligo.update_grbevent(graceid, ra=10.5)
    assert ligo.emobservations(graceid).json()['observations'] == []


def test_event_query_on_coinc_attributes(client):
    client.events.create(filename='coinc.xml', filecontents=read(COINC),
                         group='CBC', pipeline='gstlal', search='AllSky')
    assert [e['graceid'] for e in client.events.search(
        query='ci.snr > 15 si.snr > 9.7')] == ['G0001']
    assert list(client.events.search(query='si.snr > 20')) == []


# --- VOEvents, tags, signoffs, permissions ----------------------------------


def test_voevent_rules(client, url):
    graceid = create(client)['graceid']
    sid = superevent(client, graceid, 1e9)['superevent_id']
    response = requests.post(f'{url}superevents/{sid}/voevents/',
                             data={'voevent_type': 'IN'})
    assert response.status_code == 400  # needs a sky map
    response = requests.post(f'{url}superevents/{sid}/voevents/', data={
        'voevent_type': 'PR', 'skymap_type': 'bayestar',
        'skymap_filename': 'missing.fits'})
    assert response.status_code == 400
    client.superevents[sid].logs.create(
        comment='sky map', filename='bayestar.fits', filecontents=b'FITS')
    voevent = client.superevents[sid].voevents.create(
        voevent_type='initial', skymap_type='bayestar',
        skymap_filename='bayestar.fits', BNS=0.9, ProbHasNS=1.0)
    assert voevent['N'] == 1
    assert voevent['filename'] == f'{sid}-1-Initial.xml'
    assert voevent['prob_bns'] == 0.9
    assert voevent['ivorn'] == f'ivo://gwnet/LVC#{sid}-1-Initial'
    xml = client.superevents[sid].files[voevent['filename']].get().read()
    assert b'bayestar.fits' in xml and b'name="BNS"' in xml
    assert [v['N'] for v in client.superevents[sid].voevents.get()] == [1]
    log = client.superevents[sid].logs.get()[-1]
    assert (log['comment'], log['tag_names']) == ('New VOEvent',
                                                  ['em_follow'])


def test_tags(client, url):
    graceid = create(client)['graceid']
    log = client.events[graceid].logs.create(comment='hello')
    n = log['N']
    client.events[graceid].logs[n].tags.create('analyst_comments')
    assert [t['name'] for t in client.events[graceid].logs[n].tags.get()] \
        == ['analyst_comments']
    response = requests.put(
        f'{url}events/{graceid}/log/{n}/tag/analyst_comments')
    assert response.status_code == 400
    client.events[graceid].logs[n].tags.delete('analyst_comments')
    assert client.events[graceid].logs[n].tags.get() == []
    sid = superevent(client, graceid, 1e9)['superevent_id']
    log = client.superevents[sid].logs.create(comment='hi', tags=['a'])
    tag = client.superevents[sid].logs[log['N']].tags.create('b')
    assert tag['name'] == 'b'
    assert client.superevents[sid].logs[log['N']].get()['tag_names'] == \
        ['a', 'b']


def test_signoffs_and_permissions(client, url):
    graceid = create(client)['graceid']
    sid = superevent(client, graceid, 1e9)['superevent_id']
    response = requests.post(f'{url}superevents/{sid}/signoffs/', data={
        'signoff_type': 'OP', 'instrument': 'H1', 'status': 'OK',
        'comment': ''})
    assert response.status_code == 400
    assert "label 'H1OPS' not present" in response.json()
    client.superevents[sid].labels.create('ADVREQ')
    client.superevents[sid].signoff('ADV', 'OK', 'looks good')
    assert client.superevents[sid].get()['labels'] == ['ADVOK']
    response = requests.post(f'{url}v2/superevents/{sid}/signoffs/', data={
        'signoff_type': 'ADV', 'instrument': '', 'status': 'NO'})
    assert response.json()['error'].startswith('ADV signoff for advocate '
                                               'already exists')
    response = requests.post(f'{url}superevents/{sid}/labels/',
                             data={'name': 'ADVREQ'})
    assert response.status_code == 400
    ligo = GraceDb(url, force_noauth=True)
    ligo.update_signoff(sid, 'ADV', status='NO')
    assert client.superevents[sid].get()['labels'] == ['ADVNO']
    ligo.delete_signoff(sid, 'ADV')
    assert client.superevents[sid].get()['labels'] == ['ADVREQ']

    assert not client.superevents[sid].is_exposed()
    client.superevents[sid].expose()
    assert client.superevents[sid].is_exposed()
    assert {'group': 'public_users', 'permission': 'view_superevent'} in \
        ligo.permissions(sid).json()['permissions']
    client.superevents[sid].unexpose()
    assert not client.superevents[sid].is_exposed()


# --- authentication ---------------------------------------------------------


def test_usernames_recorded(client, url):
    basic = base64.b64encode(b'emfollow:secret').decode()
    response = requests.post(
        url + 'events/', data={'group': 'CBC', 'pipeline': 'gstlal'},
        files={'eventFile': ('e.json', json_event(1e9))},
        headers={'Authorization': f'Basic {basic}'})
    assert response.json()['submitter'] == 'emfollow'
    claims = base64.urlsafe_b64encode(
        json.dumps({'sub': 'albert.einstein'}).encode()).decode().rstrip('=')
    token = f'eyJhbGciOiJub25lIn0.{claims}.'
    graceid = response.json()['graceid']
    response = requests.post(f'{url}events/{graceid}/log/',
                             json={'comment': 'hi'},
                             headers={'Authorization': f'Bearer {token}'})
    assert response.json()['issuer'] == 'albert.einstein'
    response = requests.post(f'{url}events/{graceid}/log/',
                             json={'comment': 'anonymous'})
    assert response.json()['issuer'] == 'anonymous'


def test_write_allow_list(tmp_path):
    passwords = {'emfollow': 'right'}
    with GraceDbServer(str(tmp_path), port=0, write_users=['emfollow'],
                       passwords=passwords) as server:
        url = server.url
        upload = {'data': {'group': 'CBC', 'pipeline': 'gstlal'},
                  'files': {'eventFile': ('e.json', json_event(1e9))}}
        assert requests.post(url + 'events/', **upload).status_code == 401
        assert requests.post(url + 'events/', auth=('emfollow', 'wrong'),
                             **upload).status_code == 401
        assert requests.post(url + 'events/', auth=('other', 'x'),
                             **upload).status_code == 401
        passwords['other'] = 'x'
        assert requests.post(url + 'events/', auth=('other', 'x'),
                             **upload).status_code == 403
        response = requests.post(url + 'events/', auth=('emfollow', 'right'),
                                 **upload)
        assert response.status_code == 201
        assert requests.get(url + 'events/').json()['numRows'] == 1
        # gracedb-sdk with basic auth from a netrc file.
        netrc = tmp_path / 'netrc'
        netrc.write_text('machine 127.0.0.1 login emfollow password right\n')
        netrc.chmod(0o600)
        os.environ['NETRC'] = str(netrc)
        try:
            sdk = Client(url)
            event = sdk.events.create(filename='e.json', group='CBC',
                                      pipeline='gstlal',
                                      filecontents=json_event(1e9))
        finally:
            del os.environ['NETRC']
        assert event['submitter'] == 'emfollow'
