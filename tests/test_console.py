"""The operator console with Flask's test client, in the single-process
eager mode against the real local GraceDB server (real HTTP) and the real
Redis queue of :func:`gwcelery.tasks.gcn.send`: every route, bad input,
forged forms, users. Repeated forms (action keys) are in
``test_console_idempotency.py``."""

import json
import re
import subprocess
import sys

import astropy_healpix as ah
import numpy as np
import pytest
from astropy.table import Table
from ligo.skymap.io import fits

from gwcelery import app
from gwcelery.console import actions, auth, create_app, once
from gwcelery.tasks import first2years, gracedb

from .test_orchestrator import new_superevent, queued_voevents

EM_BRIGHT = {'HasNS': 1.0, 'HasRemnant': 0.9}
P_ASTRO = {'BNS': 0.95, 'NSBH': 0.01, 'BBH': 0.0, 'Terrestrial': 0.04}


def small_skymap_bytes(directory):
    """A coarse multi-order sky map with distance layers (nside 8),
    written in ``directory``."""
    order = 3
    npix = ah.nside_to_npix(2 ** order)
    prob = np.random.default_rng(1).random(npix)
    prob /= prob.sum()
    table = Table({
        'UNIQ': ah.level_ipix_to_uniq(order, np.arange(npix)),
        'PROBDENSITY': prob / ah.nside_to_pixel_area(2 ** order).value,
        'DISTMU': np.full(npix, 100.0), 'DISTSIGMA': np.full(npix, 20.0),
        'DISTNORM': np.full(npix, 1e-4)})
    table.meta.update(distmean=100.0, diststd=20.0,
                      instruments={'H1', 'L1'})
    path = directory / 'small.multiorder.fits'
    fits.write_sky_map(str(path), table, moc=True)
    return path.read_bytes()


@pytest.fixture(scope='module')
def small_skymap(tmp_path_factory):
    """:func:`small_skymap_bytes`, made once per module."""
    return small_skymap_bytes(tmp_path_factory.mktemp('skymap'))


@pytest.fixture
def eager(monkeypatch, broker_app):
    """Eager mode; the broker (where gcn.send queues) is the test Redis;
    small plots."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'volume_plot_resolution', 16)
    monkeypatch.setitem(app.conf, 'volume_plot_dpi', 30)
    monkeypatch.setitem(app.conf, 'skymap_plot_dpi', 30)


def upload_candidate(coinc_bytes, skymap, pipeline):
    event = gracedb.create_event(coinc_bytes, 'MDC', pipeline, 'CBC',
                                 filename='coinc.xml')
    graceid = event['graceid']
    gracedb.upload(skymap, 'bayestar.multiorder.fits', graceid, 'sky map',
                   ['sky_loc'])
    gracedb.upload(json.dumps(EM_BRIGHT), 'em_bright.json', graceid,
                   'em_bright', ['em_bright'])
    gracedb.upload(json.dumps(P_ASTRO), f'{pipeline}.p_astro.json',
                   graceid, 'p_astro', ['p_astro'])
    return event


@pytest.fixture
def superevent_id(eager, request, coinc_bytes, small_skymap):
    """An MDC superevent of two complete events (gstlal preferred)."""
    request.getfixturevalue('gracedb')
    first = upload_candidate(coinc_bytes, small_skymap, 'gstlal')
    second = upload_candidate(coinc_bytes, small_skymap, 'pycbc')
    sid = new_superevent(first)
    gracedb.add_event_to_superevent(sid, second['graceid'])
    return sid


@pytest.fixture
def client():
    flask_app = create_app(action_timeout=5)
    flask_app.testing = True
    return flask_app.test_client()


def token(client):
    """The session's form token, as a page of the console gives it."""
    assert client.get('/inject').status_code == 200
    with client.session_transaction() as session:
        return session[auth.CSRF_KEY]


def post(client, url, key=None, **form):
    """POST a form with this session's token and an action key (a fresh
    one unless ``key`` is given)."""
    return client.post(url, data={auth.CSRF_FIELD: token(client),
                                  once.FIELD: key or once.new_key(), **form})


def comments(graceid):
    return [entry['comment'] for entry in gracedb.get_log(graceid)]


def test_pages_and_typeahead(client, superevent_id):
    page = client.get('/').get_data(as_text=True)
    assert superevent_id in page and 'superevents/' in page
    page = client.get(f'/superevents/{superevent_id}').get_data(as_text=True)
    assert 'bayestar.multiorder.fits' not in page  # not copied yet
    assert page.count('name="graceid"') == 2
    # Each form of the page its own fresh action key.
    keys = re.findall(rf'name="{once.FIELD}" value="([^"]+)"', page)
    assert len(keys) == page.count('method="post"') == 4
    assert len(set(keys)) == 4 and all(map(once.is_valid, keys))
    assert client.get('/api/superevents?q=MS').json == [superevent_id]
    assert client.get('/api/superevents?q=TS').json == []
    retraction = client.get(f'/superevents/{superevent_id}/retraction')
    assert 'name="confirmation"' in retraction.get_data(as_text=True)
    assert f'name="{once.FIELD}"' in retraction.get_data(as_text=True)


@pytest.mark.usefixtures('gracedb')
@pytest.mark.parametrize('url', ['/superevents/MS991231zz',
                                 '/superevents/not-an-id',
                                 '/api/superevents/MS991231zz/files'])
def test_unknown_superevent_is_404(client, eager, url):
    assert client.get(url).status_code == 404


def test_forged_forms_are_refused(client, superevent_id):
    url = f'/superevents/{superevent_id}/preliminary'
    assert client.post(url).status_code == 400
    token(client)
    forged = client.post(url, data={auth.CSRF_FIELD: 'guessed'})
    assert forged.status_code == 400
    assert 'CSRF' in forged.get_data(as_text=True)
    # A new browser (another session) with a token of this one.
    other = create_app().test_client()
    assert other.post(url, data={auth.CSRF_FIELD: token(client),
                                 once.FIELD: once.new_key()}
                      ).status_code == 400
    # The right token but no action key, or a malformed one (an old page,
    # a script): refused, nothing started.
    for key in ('', 'short', 'no spaces allowed in a key'):
        refused = client.post(url, data={auth.CSRF_FIELD: token(client),
                                         once.FIELD: key})
        assert refused.status_code == 400
        assert 'no valid action key' in refused.get_data(as_text=True)
    assert not queued_voevents()
    assert not any('Operator console' in comment
                   for comment in comments(superevent_id))


def test_preliminary_then_preferred_then_update(client, superevent_id):
    sid = superevent_id
    done = post(client, f'/superevents/{sid}/preliminary')
    text = done.get_data(as_text=True)
    assert done.status_code == 200, text
    assert f'Preliminary notice sent: {sid}-1-Preliminary.xml' in text
    assert 'id="task-id"' in text and 'VOEvent sent to GCN' in text
    assert len(queued_voevents()) == 1

    superevent = gracedb.get_superevent(sid)
    new = next(graceid for graceid in superevent['gw_events']
               if graceid != superevent['preferred_event'])
    bad = post(client, f'/superevents/{sid}/preferred-event', graceid='G1')
    assert bad.status_code == 400
    assert 'is not an event of' in bad.get_data(as_text=True)
    done = post(client, f'/superevents/{sid}/preferred-event', graceid=new)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert f'preferred event is now {new}' in done.get_data(as_text=True)
    assert gracedb.get_superevent(sid)['preferred_event'] == new
    user = auth.identify({}, False, None, None)
    assert any(f'Operator console: {user} asked for a new preferred event'
               in comment for comment in comments(sid))

    files = client.get(f'/api/superevents/{sid}/files?q=multiorder').json
    assert files == ['bayestar.multiorder.fits,0']
    for form, why in (({'skymap': 'nosuch.fits'}, 'has no file nosuch'),
                      ({'skymap': 'em_bright.json,0'}, 'not a sky map'),
                      ({'p_astro': 'x.p_astro.json,3'}, 'has no file')):
        bad = post(client, f'/superevents/{sid}/update', **form)
        assert bad.status_code == 400
        assert why in bad.get_data(as_text=True)
    done = post(client, f'/superevents/{sid}/update',
                skymap='bayestar.multiorder.fits,0',
                em_bright='em_bright.json')
    text = done.get_data(as_text=True)
    assert done.status_code == 200, text
    assert f'Update notice sent: {sid}-2-Update.xml' in text
    update = queued_voevents()[-1]
    assert b'bayestar.multiorder.fits,0' in update
    assert b'<Param name="AlertType" dataType="string" value="Update"' \
        in update or b'value="Update"' in update


def test_retraction_needs_confirmation(client, superevent_id):
    sid = superevent_id
    post(client, f'/superevents/{sid}/preliminary')
    for confirmation in ('', 'MS000000a'):
        bad = post(client, f'/superevents/{sid}/retraction',
                   confirmation=confirmation)
        assert bad.status_code == 400
        assert 'not confirmed' in bad.get_data(as_text=True)
    done = post(client, f'/superevents/{sid}/retraction', confirmation=sid)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert 'Retraction notice sent' in done.get_data(as_text=True)
    # The pipeline refuses an Update now, and the page says why.
    refused = post(client, f'/superevents/{sid}/update')
    assert refused.status_code == 409
    assert 'it was retracted' in refused.get_data(as_text=True)


def test_retraction_refused_without_public_notice(client, superevent_id):
    done = post(client, f'/superevents/{superevent_id}/retraction',
                confirmation=superevent_id)
    assert done.status_code == 409
    assert 'nothing to retract' in done.get_data(as_text=True)


def test_raven_alert(client, superevent_id):
    gpstime = gracedb.get_superevent(superevent_id)['t_0']
    notice = first2years.mock_grb_notice(gpstime + 1, 10.0, 20.0, 5.0)
    external = gracedb.create_event(notice, 'MDC', 'Fermi', 'External')
    ext_id = external['graceid']
    url = f'/superevents/{superevent_id}/raven-alert'
    for bad_id, why in (('E999999', 'no such external event'),
                        (gracedb.get_superevent(superevent_id)[
                            'preferred_event'], 'is not an External')):
        bad = post(client, url, external_id=bad_id)
        assert bad.status_code == 400
        assert why in bad.get_data(as_text=True)
    done = post(client, url, external_id=ext_id)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert 'Added label: RAVEN_ALERT' in done.get_data(as_text=True)
    assert 'RAVEN_ALERT' in gracedb.get_labels(superevent_id)
    assert 'RAVEN_ALERT' in gracedb.get_labels(ext_id)
    again = post(client, url, external_id=ext_id)
    assert again.status_code == 400


@pytest.mark.usefixtures('gracedb')
def test_inject_mock_events(client, eager, monkeypatch):
    monkeypatch.setitem(app.conf, 'mock_grb_coincidence_probability', 0.0)
    monkeypatch.setitem(app.conf, 'mock_events_bad_data_fraction', 0.0)
    assert post(client, '/inject', kind='nonsense').status_code == 400
    done = post(client, '/inject', kind='joint')
    text = done.get_data(as_text=True)
    assert done.status_code == 200, text
    assert 'mock joint uploaded: ' in text
    groups = {event['group'] for event in gracedb.get_events('search: MDC')}
    assert groups == {'CBC', 'External'}


@pytest.mark.usefixtures('gracedb')
def test_users_from_netrc(eager, tmp_path):
    users_file = tmp_path / 'netrc'
    users_file.write_text('machine console login alice password s3cret\n')
    flask_app = create_app(users_file=str(users_file))
    client = flask_app.test_client()
    assert client.get('/').status_code == 401
    assert 'Basic' in client.get('/').headers['WWW-Authenticate']
    assert client.get('/', auth=('alice', 'wrong')).status_code == 401
    assert client.get('/', auth=('bob', 's3cret')).status_code == 401
    page = client.get('/', auth=('alice', 's3cret'))
    assert page.status_code == 200
    assert '<b>alice</b>' in page.get_data(as_text=True)


def test_identify():
    users = {'alice': 'pw'}
    assert auth.identify(users, True, 'alice', None) == 'alice'
    assert auth.identify(users, True, 'mallory', None) is None
    assert auth.identify({}, True, 'carol', None) == 'carol'
    assert auth.identify({}, True, None, None) is None
    assert auth.identify({}, False, 'ignored', None) == \
        auth.identify({}, False, None, None)


def test_binding_elsewhere_needs_users():
    assert auth.check_binding('127.0.0.1', {}, False) is None
    assert auth.check_binding('0.0.0.0', {}, False)
    assert auth.check_binding('0.0.0.0', {'a': 'b'}, False) is None
    assert auth.check_binding('0.0.0.0', {}, True) is None
    out = subprocess.run(
        [sys.executable, '-m', 'gwcelery', 'console', '--host', '0.0.0.0'],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert 'open to anyone' in out.stderr


def test_outcomes_are_read_from_the_log():
    entries = [
        {'N': 3, 'comment': 'Operator console: x asked for an Update'},
        {'N': 4, 'comment': 'VOEvent sent to GCN',
         'filename': 'MS1-2-Update.xml'},
    ]
    assert actions.find_outcome('update', entries, 3).state == 'done'
    assert actions.find_outcome('update', entries, 4) is None
    assert actions.find_outcome('preliminary', entries, 0) is None
    refusal = [{'N': 5, 'comment': 'No Update notice sent, because it '
                                   'was retracted'}]
    assert actions.find_outcome('update', refusal, 0).state == 'refused'


@pytest.mark.usefixtures('gracedb')
def test_remote_user_behind_a_proxy(eager):
    client = create_app(trust_remote_user=True).test_client()
    assert client.get('/').status_code == 401
    page = client.get('/', environ_base={'REMOTE_USER': 'carol'})
    assert page.status_code == 200
    assert '<b>carol</b>' in page.get_data(as_text=True)


def test_flask_command_serves_the_console_routes():
    out = subprocess.run(
        [sys.executable, '-m', 'gwcelery', 'flask', 'routes'],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for rule in ('/superevents/<superevent_id>/update', '/inject',
                 '/api/superevents/<superevent_id>/files'):
        assert rule in out.stdout
