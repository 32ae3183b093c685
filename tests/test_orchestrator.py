"""The orchestrator's workflows in the single-process eager mode, against
the real local GraceDB server (real HTTP) and the real Redis queue of
:func:`gwcelery.tasks.gcn.send`; BAYESTAR is the real one."""

import io
import json

import lxml.etree
import pytest
from astropy.io import fits

from gwcelery import app, voevent
from gwcelery.tasks import (
    alerts,
    gracedb,
    localization,
    orchestrator,
    orchestrator_uploads,
)
from gwcelery.util.voevent_broker import VOEventQueue

HIGH_FAR_COINC = (b'173834723,5.176954877338635e-16',
                  b'173834723,1e-06')


@pytest.fixture
def eager(monkeypatch, broker_app):
    """Eager mode; the broker (where gcn.send queues) is the test Redis;
    small plots."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'volume_plot_resolution', 16)
    monkeypatch.setitem(app.conf, 'volume_plot_dpi', 30)
    monkeypatch.setitem(app.conf, 'skymap_plot_dpi', 30)


def queued_voevents():
    queue = VOEventQueue(app.conf)
    try:
        return [payload for _, payload in queue.entries()]
    finally:
        queue.close()


def upload_cbc(coinc_bytes, psd_bytes, pipeline='gstlal'):
    """Upload a CBC event and its PSD as a search does; return the event
    and the log entry of the PSD."""
    event = gracedb.create_event(coinc_bytes, 'AllSky', pipeline, 'CBC',
                                 filename='coinc.xml')
    entry = gracedb.upload(psd_bytes, 'psd.xml.gz', event['graceid'],
                           'PSD', ['psd'])
    return event, entry


def alert(alert_type, obj, data=None):
    uid = obj.get('graceid') or obj.get('superevent_id')
    return {'uid': uid, 'alert_type': alert_type, 'object': obj,
            'data': obj if data is None else data}


def annotate(event, psd_entry):
    """Feed the event's ``new`` and PSD ``log`` alerts to the handler (as
    tasks, as the listener does)."""
    for message in (alert('new', event), alert('log', event, psd_entry)):
        orchestrator_uploads.handle_cbc_event.delay(message)
        localization.localize.delay(message)


def new_superevent(event):
    event = gracedb.get_event(event['graceid'])
    t_0 = event['gpstime']
    superevent = gracedb.create_superevent(event['graceid'], t_0, t_0 - 1,
                                           t_0 + 1)
    return superevent['superevent_id']


def log_comments(graceid):
    return [entry['comment'] for entry in gracedb.get_log(graceid)]


def latest_voevent(superevent_id):
    record = gracedb.get_voevents(superevent_id)[-1]
    return record, gracedb.download(record['filename'], superevent_id)


@pytest.mark.usefixtures('gracedb')
def test_cbc_event_to_preliminary_alert(eager, coinc_bytes, psd_bytes):
    # Per event: classification and the real BAYESTAR localisation.
    event, psd_entry = upload_cbc(coinc_bytes, psd_bytes)
    graceid = event['graceid']
    annotate(event, psd_entry)
    assert set(gracedb.get_labels(graceid)) == {
        'EMBRIGHT_READY', 'PASTRO_READY', 'SKYMAP_READY'}
    skymap = gracedb.download('bayestar.multiorder.fits', graceid)
    with fits.open(io.BytesIO(skymap)) as hdus:
        assert hdus[1].header['OBJECT'] == graceid
    assert json.loads(gracedb.download('em_bright.json', graceid))[
        'HasNS'] == 1.0
    assert json.loads(gracedb.download('gstlal.p_astro.json', graceid))[
        'BNS'] > 0.99

    # Per superevent: EM_READY starts the preliminary alert.
    superevent_id = new_superevent(event)
    gracedb.create_label('EM_READY', superevent_id)
    superevent = gracedb.get_superevent(superevent_id)
    orchestrator.handle_superevent(
        alert('label_added', superevent, {'name': 'EM_READY'}))

    files = {entry['filename'] for entry in gracedb.get_log(superevent_id)}
    assert {'bayestar.multiorder.fits', 'bayestar.png', 'bayestar.volume.png',
            'bayestar.fits.html', 'em_bright.json', 'gstlal.p_astro.json',
            f'{superevent_id}-1-Preliminary.xml', 'circular.txt'} <= files
    assert gracedb.download('bayestar.multiorder.fits',
                            superevent_id) == skymap
    assert 'GCN_PRELIM_SENT' in gracedb.get_labels(superevent_id)

    record, payload = latest_voevent(superevent_id)
    assert record['voevent_type'] == 'PR'
    assert record['skymap_filename'] == 'bayestar.multiorder.fits,0'
    assert queued_voevents() == [payload]  # GraceDB has what GCN gets
    voevent.validate(payload)
    root = lxml.etree.fromstring(payload)
    params = {p.get('name'): p.get('value') for p in root.iter('Param')}
    assert root.get('ivorn') == \
        f'ivo://gwnet/LVC#{superevent_id}-1-Preliminary'
    assert params['GraceID'] == superevent_id
    assert params['AlertType'] == 'Preliminary'
    assert params['Pipeline'] == 'gstlal'
    assert params['skymap_fits'] == (
        f'{app.conf.gracedb_url}superevents/{superevent_id}/files/'
        'bayestar.multiorder.fits,0')
    assert float(params['HasNS']) == 1.0 and float(params['BNS']) > 0.99

    circular = gracedb.download('circular.txt', superevent_id).decode()
    assert f'{superevent_id}: Identification of a GW compact binary' \
        in circular
    assert 'BNS (>99%)' in circular and 'the 90% credible region' in circular

    # A new preferred event after the alert: a second preliminary alert
    # with its products, when the clean-up timeout has passed.
    second, _ = upload_cbc(coinc_bytes, psd_bytes, pipeline='pycbc')
    orchestrator_uploads.handle_cbc_event(alert('new', second))
    gracedb.upload(skymap, 'bayestar.multiorder.fits', second['graceid'],
                   'sky map', ['sky_loc'])
    gracedb.update_superevent(superevent_id,
                              preferred_event=second['graceid'])
    orchestrator.repeat_if_changed.delay(gracedb.get_superevent(superevent_id),
                                   graceid)
    record, payload = latest_voevent(superevent_id)
    assert record['N'] == 2 and record['voevent_type'] == 'PR'
    assert record['skymap_filename'] == 'bayestar.multiorder.fits,1'
    params = {p.get('name'): p.get('value')
              for p in lxml.etree.fromstring(payload).iter('Param')}
    assert params['Pipeline'] == 'pycbc' and params['Pkt_Ser_Num'] == '2'
    assert queued_voevents()[-1] == payload
    assert json.loads(gracedb.download('pycbc.p_astro.json',
                                       superevent_id))['BNS'] > 0.99

    # No change: nothing more is sent.
    orchestrator.repeat_if_changed.delay(gracedb.get_superevent(superevent_id),
                                   second['graceid'])
    assert len(gracedb.get_voevents(superevent_id)) == 2


@pytest.mark.usefixtures('gracedb')
def test_failed_localization_is_logged_and_alert_goes_out(
        eager, coinc_bytes, monkeypatch):
    """A PSD file that is not a PSD: BAYESTAR fails; the failure is in the
    logs of the event and of its superevent, and the fallback alert goes
    out without a sky map."""
    # Error callbacks run in eager mode only when failures do not
    # propagate (as on a worker).
    monkeypatch.setitem(app.conf, 'task_eager_propagates', False)
    event, psd_entry = upload_cbc(coinc_bytes, b'not a PSD file')
    graceid = event['graceid']
    superevent_id = new_superevent(event)
    annotate(event, psd_entry)
    labels = gracedb.get_labels(graceid)
    assert 'SKYMAP_READY' not in labels
    assert {'EMBRIGHT_READY', 'PASTRO_READY'} <= set(labels)
    for graceid_or_sid in (graceid, superevent_id):
        assert any(comment.startswith(f'Sky localization of {graceid} '
                                      'failed')
                   for comment in log_comments(graceid_or_sid))

    # No EM_READY came: the fallback sends what exists.
    orchestrator.fallback_preliminary.delay(gracedb.get_superevent(superevent_id))
    comments = log_comments(superevent_id)
    assert any('still lacks SKYMAP_READY' in c for c in comments)
    assert any(c.startswith('No sky map available') for c in comments)
    assert 'GCN_PRELIM_SENT' in gracedb.get_labels(superevent_id)
    record, payload = latest_voevent(superevent_id)
    assert record['skymap_filename'] is None
    voevent.validate(payload)
    root = lxml.etree.fromstring(payload)
    assert {g.get('type') for g in root.iter('Group')} == {
        'Classification', 'Properties'}
    assert queued_voevents() == [payload]
    circular = gracedb.download('circular.txt', superevent_id).decode()
    assert 'No sky map is available at this time' in circular

    # Once sent, the fallback does nothing more.
    orchestrator.fallback_preliminary.delay(gracedb.get_superevent(superevent_id))
    assert len(gracedb.get_voevents(superevent_id)) == 1


@pytest.mark.usefixtures('gracedb')
def test_below_public_threshold_no_alert(eager, coinc_bytes):
    coinc = coinc_bytes.replace(*HIGH_FAR_COINC)
    event = gracedb.create_event(coinc, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    assert event['far'] == 1e-6
    superevent_id = new_superevent(event)
    gracedb.create_label('EM_READY', superevent_id)
    superevent = gracedb.get_superevent(superevent_id)
    orchestrator.handle_superevent(
        alert('label_added', superevent, {'name': 'EM_READY'}))
    orchestrator.fallback_preliminary.delay(superevent)
    assert gracedb.get_voevents(superevent_id) == []
    assert queued_voevents() == []


@pytest.mark.usefixtures('gracedb')
def test_no_fallback_in_eager_mode(eager, coinc_bytes):
    """The eager mode would run the delayed fallback at once, before any
    sky map: a new superevent schedules nothing there."""
    event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    superevent_id = new_superevent(event)
    orchestrator.handle_superevent(
        alert('new', gracedb.get_superevent(superevent_id)))
    assert gracedb.get_voevents(superevent_id) == []


@pytest.mark.usefixtures('gracedb')
def test_events_above_superevent_threshold_are_not_annotated(
        eager, coinc_bytes, monkeypatch):
    monkeypatch.setitem(app.conf, 'superevent_far_threshold', 1e-7)
    coinc = coinc_bytes.replace(*HIGH_FAR_COINC)
    event = gracedb.create_event(coinc, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    orchestrator_uploads.handle_cbc_event(alert('new', event))
    assert gracedb.get_labels(event['graceid']) == []


@pytest.mark.usefixtures('gracedb')
def test_burst_skymap_upload_labels_event(eager, coinc_bytes):
    event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    burst = dict(event, group='Burst', pipeline='CWB')
    orchestrator_uploads.handle_burst_event(
        alert('log', burst, {'filename': 'cwb.fits.gz'}))
    assert gracedb.get_labels(event['graceid']) == ['SKYMAP_READY']
    orchestrator_uploads.handle_burst_event(
        alert('log', burst, {'filename': 'cwb.txt'}))
    assert gracedb.get_labels(event['graceid']) == ['SKYMAP_READY']


def test_choose_products():
    log_entries = [
        {'filename': 'coinc.xml', 'file_version': 0},
        {'filename': 'cwb.fits.gz', 'file_version': 0},
        {'filename': 'em_bright.json', 'file_version': 0},
        {'filename': '', 'file_version': None},
        {'filename': 'mbta.p_astro.json', 'file_version': 0},
    ]
    assert orchestrator.choose_products(log_entries) == [
        'cwb.fits.gz', 'em_bright.json', 'mbta.p_astro.json']
    log_entries.append({'filename': 'bayestar.multiorder.fits',
                        'file_version': 0})
    assert orchestrator.choose_products(log_entries)[0] == \
        'bayestar.multiorder.fits'
    assert orchestrator.choose_products(log_entries[:1]) == [None] * 3


def test_voevent_classification_fields():
    fields = alerts.voevent_classification(
        json.dumps({'HasNS': 0.5, 'HasRemnant': 0.25, 'HasMassGap': 0.0}),
        json.dumps({'BNS': 0.1, 'NSBH': 0.2, 'BBH': 0.3,
                    'Terrestrial': 0.4}))
    assert fields == {'ProbHasNS': 0.5, 'ProbHasRemnant': 0.25,
                      'HasMassGap': 0.0, 'BNS': 0.1, 'NSBH': 0.2,
                      'BBH': 0.3, 'Terrestrial': 0.4}
    assert alerts.voevent_classification(None, None) == {}


@pytest.mark.parametrize('superevent_id, role', [
    ('S190425z', 'observation'), ('TS190425z', 'test'),
    ('MS190425z', 'test')])
def test_superevent_role(superevent_id, role):
    assert alerts.superevent_role(superevent_id) == role


def test_handler_nodes():
    assert 'cbc_gstlal' in orchestrator_uploads.CBC_NODES
    assert 'test_mbta' in orchestrator_uploads.CBC_NODES
    assert 'burst_cwb' in orchestrator_uploads.BURST_NODES
    assert set(orchestrator_uploads.CBC_NODES).isdisjoint(
        orchestrator_uploads.BURST_NODES)
