"""The alert lifecycle in the single-process eager mode, against the real
local GraceDB server (real HTTP, real sign-offs) and the real Redis queue
of :func:`gwcelery.tasks.gcn.send`: preliminary → ADVREQ → ADVOK →
Initial → Update; ADVNO → Retraction; sign-offs that call for nothing;
DQV and INJ gating; exactly once."""

import json

import lxml.etree
import pytest

from gwcelery import app, voevent
from gwcelery.tasks import (
    alerts,
    circulars,
    early_warning,
    gracedb,
    lifecycle,
    orchestrator,
)

from .test_orchestrator import (
    alert,
    log_comments,
    new_superevent,
    queued_voevents,
)

EM_BRIGHT = {'HasNS': 1.0, 'HasRemnant': 0.9}
P_ASTRO = {'BNS': 0.95, 'NSBH': 0.01, 'BBH': 0.0, 'Terrestrial': 0.04}


@pytest.fixture
def eager(monkeypatch, broker_app):
    """Eager mode with error callbacks as on a worker; the broker (where
    gcn.send queues) is the test Redis; small plots."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'volume_plot_resolution', 16)
    monkeypatch.setitem(app.conf, 'volume_plot_dpi', 30)
    monkeypatch.setitem(app.conf, 'skymap_plot_dpi', 30)


@pytest.fixture
def candidate(coinc_bytes, bayestar_skymap):
    """A function that makes a complete CBC superevent (its preferred
    event has a sky map, unless ``skymap`` is false, and classification),
    with ``labels``; returns its id."""
    def make(labels=(), skymap=True):
        event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                     filename='coinc.xml')
        graceid = event['graceid']
        if skymap:
            gracedb.upload(bayestar_skymap, 'bayestar.multiorder.fits',
                           graceid, 'sky map', ['sky_loc'])
        gracedb.upload(json.dumps(EM_BRIGHT), 'em_bright.json', graceid,
                       'em_bright', ['em_bright'])
        gracedb.upload(json.dumps(P_ASTRO), 'gstlal.p_astro.json', graceid,
                       'p_astro', ['p_astro'])
        superevent_id = new_superevent(event)
        for label in labels:
            gracedb.create_label(label, superevent_id)
        return superevent_id
    return make


def em_ready(superevent_id):
    """EM_READY, as the superevent manager applies it: the preliminary
    alert starts."""
    gracedb.create_label('EM_READY', superevent_id)
    orchestrator.handle_superevent(alert(
        'label_added', gracedb.get_superevent(superevent_id),
        {'name': 'EM_READY'}))


def sign_off(superevent_id, status):
    """An advocate's ADV sign-off through the GraceDB API, and the label
    alert that GraceDB then sends."""
    gracedb.create_signoff(superevent_id, 'ADV', status)
    label = f'ADV{status}'
    assert label in gracedb.get_labels(superevent_id)
    feed_label(superevent_id, label)


def feed_label(superevent_id, label):
    lifecycle.handle_label(alert(
        'label_added', gracedb.get_superevent(superevent_id),
        {'name': label}))


def voevent_types(superevent_id):
    return [record['voevent_type']
            for record in gracedb.get_voevents(superevent_id)]


def params_of(payload):
    root = lxml.etree.fromstring(payload)
    return root, {p.get('name'): p.get('value') for p in root.iter('Param')}


@pytest.mark.usefixtures('gracedb')
def test_signoff_ok_initial_then_update(eager, candidate, gracedb_server):
    superevent_id = candidate()
    em_ready(superevent_id)
    labels = gracedb.get_labels(superevent_id)
    assert {'GCN_PRELIM_SENT', 'ADVREQ'} <= set(labels)
    assert voevent_types(superevent_id) == ['PR']
    assert not gracedb_server.store.permissions(superevent_id)

    sign_off(superevent_id, 'OK')
    assert voevent_types(superevent_id) == ['PR', 'IN']
    payloads = queued_voevents()
    assert len(payloads) == 2
    initial = payloads[1]
    assert gracedb.download(f'{superevent_id}-2-Initial.xml',
                            superevent_id) == initial
    voevent.validate(initial)
    root, params = params_of(initial)
    assert root.get('ivorn') == f'ivo://gwnet/LVC#{superevent_id}-2-Initial'
    assert params['Packet_Type'] == '151' and params['Pkt_Ser_Num'] == '2'
    assert params['AlertType'] == 'Initial'
    assert params['skymap_fits'].endswith(
        f'superevents/{superevent_id}/files/bayestar.multiorder.fits,0')
    assert float(params['BNS']) == 0.95 and float(params['HasNS']) == 1.0

    # Public: the superevent and its products.
    assert any(p['group'] == 'public_users'
               for p in gracedb_server.store.permissions(superevent_id))
    public = {entry['filename'] for entry in gracedb.get_log(superevent_id)
              if 'public' in entry['tag_names']}
    assert {'bayestar.multiorder.fits', 'em_bright.json',
            'gstlal.p_astro.json', f'{superevent_id}-2-Initial.xml'} <= public

    circular = gracedb.download('initial-circular.txt',
                                superevent_id).decode()
    assert f'LIGO/Virgo/KAGRA {superevent_id}: Identification' in circular
    assert 'confirmed by the LIGO/Virgo/KAGRA rapid-response team' \
        in circular
    assert 'BNS (95%)' in circular and '90% credible region' in circular
    gpstime = gracedb.get_superevent(superevent_id)[
        'preferred_event_data']['gpstime']
    assert f'(GPS time: {gpstime:.3f})' in circular
    assert f'about one in {circulars.format_interval(5.176954877338635e-16)}'\
        in circular

    # The same label again (a repeated alert or task): no second Initial.
    feed_label(superevent_id, 'ADVOK')
    assert voevent_types(superevent_id) == ['PR', 'IN']
    assert any('its Initial notice was already sent' in comment
               for comment in log_comments(superevent_id))

    # Updates: the latest products; an unknown sky map sends nothing.
    orchestrator.update_alert(superevent_id)
    assert voevent_types(superevent_id) == ['PR', 'IN', 'UP']
    root, params = params_of(queued_voevents()[-1])
    assert params['Pkt_Ser_Num'] == '3' and params['Packet_Type'] == '152'
    assert root.get('ivorn').endswith(f'{superevent_id}-3-Update')
    assert 'Updated analysis of' in gracedb.download(
        'update-circular.txt', superevent_id).decode()
    orchestrator.update_alert(superevent_id, 'nosuch.multiorder.fits')
    assert voevent_types(superevent_id) == ['PR', 'IN', 'UP']
    assert any('has no file nosuch.multiorder.fits' in comment
               for comment in log_comments(superevent_id))
    assert len(queued_voevents()) == 3


@pytest.mark.usefixtures('gracedb')
def test_signoff_no_retraction_is_final(eager, candidate):
    superevent_id = candidate()
    em_ready(superevent_id)
    sign_off(superevent_id, 'NO')
    assert voevent_types(superevent_id) == ['PR', 'RE']
    retraction = queued_voevents()[-1]
    voevent.validate(retraction)
    root, params = params_of(retraction)
    assert root.get('ivorn').endswith(f'{superevent_id}-2-Retraction')
    assert params['Packet_Type'] == '164' and params['Pkt_Ser_Num'] == '2'
    assert 'FAR' not in params and 'skymap_fits' not in params
    circular = gracedb.download('retraction-circular.txt',
                                superevent_id).decode()
    assert f'{superevent_id}: Retraction' in circular
    assert 'retracts the candidate' in circular
    assert 'false alarm rate 5.2e-16 Hz' in circular

    # Final: nothing after it, automatic or not.
    feed_label(superevent_id, 'ADVNO')
    orchestrator.update_alert(superevent_id)
    em_ready(superevent_id)
    orchestrator.repeat_if_changed(gracedb.get_superevent(superevent_id),
                                   'G0')
    assert voevent_types(superevent_id) == ['PR', 'RE']
    assert len(queued_voevents()) == 2
    comments = log_comments(superevent_id)
    assert any('No Update notice sent, because it was retracted' in c
               for c in comments)
    assert any('Blocking automated Preliminary notice' in c
               for c in comments)


@pytest.mark.usefixtures('gracedb')
def test_signoff_before_preliminary(eager, candidate):
    """A decision before any notice: nothing is sent, neither for the
    sign-off nor the automatic preliminary afterwards (on its time-out or
    on EM_READY)."""
    superevent_id = candidate(labels=['ADVREQ'])
    sign_off(superevent_id, 'OK')
    # The fallback timer fires after the decision, then EM_READY comes.
    orchestrator.fallback_preliminary(gracedb.get_superevent(superevent_id))
    em_ready(superevent_id)
    assert voevent_types(superevent_id) == []
    assert queued_voevents() == []
    comments = log_comments(superevent_id)
    assert any('ADVOK: no notice sent, because no notice went out' in c
               for c in comments)
    assert any('Blocking automated Preliminary notice, because an '
               'operator decided (ADVOK)' in c for c in comments)


@pytest.mark.usefixtures('gracedb')
def test_retraction_needs_a_public_notice(eager, candidate):
    superevent_id = candidate(labels=['ADVREQ'])
    sign_off(superevent_id, 'NO')
    assert voevent_types(superevent_id) == []
    assert any('nothing to retract' in c
               for c in log_comments(superevent_id))


@pytest.mark.usefixtures('gracedb')
@pytest.mark.parametrize('label', ['DQV', 'INJ'])
def test_dqv_and_inj_block_preliminary_and_advreq(eager, candidate, label):
    superevent_id = candidate(labels=[label])
    em_ready(superevent_id)
    assert voevent_types(superevent_id) == []
    assert queued_voevents() == []
    labels = gracedb.get_labels(superevent_id)
    assert 'ADVREQ' not in labels and 'GCN_PRELIM_SENT' not in labels


@pytest.mark.usefixtures('gracedb')
def test_dqv_after_preliminary_is_logged(eager, candidate):
    superevent_id = candidate()
    em_ready(superevent_id)
    gracedb.create_label('DQV', superevent_id)
    feed_label(superevent_id, 'DQV')
    assert any(c.startswith('DQV applied after the Preliminary notice')
               for c in log_comments(superevent_id))
    assert voevent_types(superevent_id) == ['PR']


@pytest.mark.usefixtures('gracedb')
def test_second_initial_record_is_not_sent(eager, candidate):
    """Two Initial records (e.g. two concurrent decisions): only the first
    to claim its notice is sent."""
    superevent_id = candidate()
    em_ready(superevent_id)
    sign_off(superevent_id, 'OK')
    superevent = gracedb.get_superevent(superevent_id)
    filename = gracedb.create_voevent(
        superevent_id, 'initial', skymap_type='bayestar',
        skymap_filename='bayestar.multiorder.fits,0')
    alerts.send_voevent(filename, superevent, 'bayestar.multiorder.fits,0',
                        None, None)
    assert len(queued_voevents()) == 2
    assert any(f'{filename} not sent' in c
               for c in log_comments(superevent_id))
    # The task that holds the claim may run again (a redelivery).
    assert alerts.claim(superevent_id, 'Initial',
                        f'{superevent_id}-2-Initial.xml')


@pytest.mark.usefixtures('gracedb')
def test_early_warning_then_preliminary(eager, coinc_bytes, bayestar_skymap):
    event = gracedb.create_event(coinc_bytes, 'EarlyWarning', 'gstlal',
                                 'CBC', filename='coinc.xml')
    graceid = event['graceid']
    gracedb.upload(bayestar_skymap, 'bayestar.multiorder.fits', graceid,
                   'sky map', ['sky_loc'])
    superevent_id = new_superevent(event)
    event = gracedb.get_event(graceid)
    assert early_warning.passes_early_warning_threshold(event)
    early_warning.handle_event(alert('label_added', event,
                                     {'name': 'SKYMAP_READY'}))
    assert voevent_types(superevent_id) == ['EW']
    payload = queued_voevents()[0]
    voevent.validate(payload)
    root, params = params_of(payload)
    assert root.get('ivorn').endswith(f'{superevent_id}-1-EarlyWarning')
    assert params['Packet_Type'] == '163' and params['Pkt_Ser_Num'] == '1'
    assert params['Search'] == 'EarlyWarning'
    assert 'pre-merger alert' in gracedb.download(
        'earlywarning-circular.txt', superevent_id).decode()

    # The preliminary follows with the next serial number; no second
    # early warning after it.
    em_ready(superevent_id)
    assert voevent_types(superevent_id) == ['EW', 'PR']
    assert params_of(queued_voevents()[-1])[1]['Pkt_Ser_Num'] == '2'
    early_warning.handle_event(alert('label_added', event,
                                     {'name': 'SKYMAP_READY'}))
    assert voevent_types(superevent_id) == ['EW', 'PR']


def test_early_warning_threshold():
    event = {'search': 'EarlyWarning', 'far': 1e-6, 'labels': []}
    assert early_warning.passes_early_warning_threshold(event)
    assert not early_warning.passes_early_warning_threshold(
        dict(event, far=1e-4))
    assert not early_warning.passes_early_warning_threshold(
        dict(event, search='AllSky'))
    assert not early_warning.passes_early_warning_threshold(
        dict(event, labels=['INJ']))


@pytest.mark.usefixtures('gracedb')
def test_late_skymap_completes_initial(eager, candidate, bayestar_skymap):
    """A preliminary without sky map (sent on its time-out), ADVOK: no
    Initial yet (it needs a sky map); the sky map's late EM_READY sends no
    preliminary but the Initial."""
    superevent_id = candidate(skymap=False)
    orchestrator.fallback_preliminary(gracedb.get_superevent(superevent_id))
    assert voevent_types(superevent_id) == ['PR']
    sign_off(superevent_id, 'OK')
    assert voevent_types(superevent_id) == ['PR']
    assert any('no Initial notice sent, because the superevent has no sky '
               'map' in c for c in log_comments(superevent_id))
    preferred = gracedb.get_superevent(superevent_id)['preferred_event']
    gracedb.upload(bayestar_skymap, 'bayestar.multiorder.fits', preferred,
                   'sky map', ['sky_loc'])
    em_ready(superevent_id)
    assert voevent_types(superevent_id) == ['PR', 'IN']
    params = params_of(queued_voevents()[-1])[1]
    assert params['AlertType'] == 'Initial' and 'skymap_fits' in params


def feed_log(superevent_id, entry):
    lifecycle.handle_skymap(alert(
        'log', gracedb.get_superevent(superevent_id), entry))


@pytest.mark.usefixtures('gracedb')
def test_new_skymap_after_initial_sends_an_update(eager, candidate,
                                                  bayestar_skymap):
    """A sky map uploaded before the Initial waits for it (the Initial
    carries it); one uploaded after the Initial is sent as an Update, once;
    other files and the alert of an older entry send nothing."""
    superevent_id = candidate()
    em_ready(superevent_id)
    early = gracedb.upload(bayestar_skymap, 'early.multiorder.fits',
                           superevent_id, 'a first analysis', ['sky_loc'])
    feed_log(superevent_id, early)
    assert voevent_types(superevent_id) == ['PR']

    sign_off(superevent_id, 'OK')
    assert voevent_types(superevent_id) == ['PR', 'IN']
    assert params_of(queued_voevents()[-1])[1]['skymap_fits'].endswith(
        'files/early.multiorder.fits,0')

    plot = gracedb.upload(b'PNG', 'later.png', superevent_id, 'a plot',
                          ['sky_loc'])
    feed_log(superevent_id, plot)
    assert voevent_types(superevent_id) == ['PR', 'IN']

    later = gracedb.upload(bayestar_skymap, 'later.multiorder.fits',
                           superevent_id, 'a later analysis', ['sky_loc'])
    feed_log(superevent_id, later)
    assert voevent_types(superevent_id) == ['PR', 'IN', 'UP']
    root, params = params_of(queued_voevents()[-1])
    assert params['AlertType'] == 'Update'
    assert params['skymap_fits'].endswith('files/later.multiorder.fits,0')

    # The same alert again, or the early sky map's: no second Update.
    feed_log(superevent_id, later)
    feed_log(superevent_id, early)
    assert voevent_types(superevent_id) == ['PR', 'IN', 'UP']
