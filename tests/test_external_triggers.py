"""External triggers and RAVEN against the local GraceDB server, with the
tasks in eager mode (one process; the server is real, over HTTP)."""

import json
import logging
import os

import healpy as hp
import lxml.etree
import numpy as np
import pytest

from gwcelery import app
from gwcelery.external import notices
from gwcelery.tasks import external_skymaps, external_triggers, gracedb, raven

from .conftest import DATA_DIR
from .test_external_triggers_parse import EXPECTED

pytestmark = pytest.mark.integration  # a Redis server and a GraceDB server

YEAR = 365 * 86400
GRB_RATE = 311 / YEAR
SUBGRB_RATE = (311 + 65) / YEAR
SNEWS_RATE = 1 / (100 * YEAR)


def read(name):
    with open(os.path.join(DATA_DIR, 'gcn', name), 'rb') as f:
        return f.read()


def modified(payload, *, isotime=None, date=None, ra=None, dec=None,
             radius=None, params=None, ivorn=None):
    """A copy of a notice with some values changed."""
    root = lxml.etree.fromstring(payload)
    where = './WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords'
    for path, value in (
            (f'{where}/Time/TimeInstant/ISOTime', isotime),
            ('./Who/Date', date),
            (f'{where}/Position2D/Value2/C1', ra),
            (f'{where}/Position2D/Value2/C2', dec),
            (f'{where}/Position2D/Error2Radius', radius)):
        if value is not None:
            root.find(path).text = str(value)
    for name, value in (params or {}).items():
        root.find(f"./What/Param[@name='{name}']").set('value', str(value))
    if ivorn is not None:
        root.set('ivorn', ivorn)
    return lxml.etree.tostring(root, xml_declaration=True, encoding='UTF-8')


@pytest.fixture
def eager(gracedb, monkeypatch):
    """Tasks run inline, against the local GraceDB server."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'external_skymap_nside', 64)
    return gracedb


def gw_superevent(t_0, far, pipeline='gstlal', group='CBC'):
    """Upload a GW candidate (JSON event file) and make it a superevent."""
    event = gracedb.create_event(
        json.dumps({'gpstime': t_0, 'far': far,
                    'instruments': 'H1,L1'}).encode(),
        'AllSky', pipeline, group)
    return gracedb.create_superevent(event['graceid'], t_0, t_0 - 1, t_0 + 1)


def new_superevent_alert(superevent):
    return {'uid': superevent['superevent_id'], 'alert_type': 'new',
            'data': superevent, 'object': superevent}


def log_comments(graceid):
    return [entry['comment'] for entry in gracedb.get_log(graceid)]


def log_files(graceid):
    return [entry['filename'] for entry in gracedb.get_log(graceid)
            if entry['filename']]


def external_events():
    return gracedb.get_events('group: External') + gracedb.get_events(
        'group: Test')


# --- notices to events -------------------------------------------------


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_sample_notice_to_event(eager, name, caplog):
    """Every sample, real and built (see test_external_triggers_parse)."""
    (pipeline, search, trigger_id, gpstime, position, role, not_grb,
     _) = EXPECTED[name]
    payload = read(name)
    with caplog.at_level(logging.INFO):
        graceid = external_triggers.handle(payload)
    if 'low_reliability' in name:
        assert graceid is None
        assert external_events() == []
        assert 'dropped, not recorded in GraceDB: low reliability' in \
            caplog.text
        return
    event = gracedb.get_event(graceid)
    assert graceid.startswith('T' if role == 'test' else 'E')
    assert (event['group'], event['pipeline'], event['search']) == (
        'Test' if role == 'test' else 'External', pipeline, search)
    assert event['gpstime'] == pytest.approx(gpstime, abs=1e-6)
    assert event['extra_attributes']['GRB']['trigger_id'] == trigger_id
    assert gracedb.download('initial.data', graceid) == \
        notices.recorded_payload(payload, notices.parse(payload))
    assert event['labels'] == (['NOT_GRB'] if not_grb else [])

    skymap = f'{pipeline.lower()}_skymap.fits.gz'
    if position is None:
        assert skymap not in log_files(graceid)
    else:
        assert skymap in log_files(graceid)
        prob, _ = external_skymaps.read_skymap(
            gracedb.download(skymap, graceid))
        ra, dec, radius = position
        assert prob.sum() == pytest.approx(1)
        assert prob[hp.ang2pix(64, ra, dec, nest=True, lonlat=True)] > 0
        if radius == 0:  # a point: the one pixel it falls in
            assert np.count_nonzero(prob) == 1
            assert any('error circle: the one pixel of RA' in comment
                       for comment in log_comments(graceid))

    searched = any('RAVEN: no superevents' in comment
                   for comment in log_comments(graceid))
    assert searched is not not_grb


def test_later_notice_replaces_and_identical_or_older_changes_nothing(eager):
    original = read('fermi_grb_gcn.xml')
    graceid = external_triggers.handle(original)
    refined = modified(original, ra=150.0, dec=-30.0, radius=3.0,
                       date='2018-05-24T18:40:00',
                       ivorn='ivo://nasa.gsfc.gcn/Fermi#GBM_Fin_Pos_refined')

    assert external_triggers.handle(refined) == graceid
    event = gracedb.get_event(graceid)
    assert event['extra_attributes']['GRB']['ra'] == 150.0
    assert event['extra_attributes']['GRB']['error_radius'] == 3.0
    assert gracedb.download('initial.data', graceid) == refined
    assert log_files(graceid).count('fermi_skymap.fits.gz') == 2
    prob, _ = external_skymaps.read_skymap(
        gracedb.download('fermi_skymap.fits.gz', graceid))
    assert prob[hp.ang2pix(64, 150.0, -30.0, nest=True, lonlat=True)] > 0
    assert [e['graceid'] for e in external_events()] == [graceid]

    entries = len(gracedb.get_log(graceid))
    assert external_triggers.handle(refined) == graceid  # identical
    assert external_triggers.handle(original) == graceid  # older
    assert len(gracedb.get_log(graceid)) == entries
    assert gracedb.download('initial.data', graceid) == refined


def test_not_grb_label_follows_the_classification(eager):
    noise = read('fermi_noise_gcn.xml')
    graceid = external_triggers.handle(noise)
    assert gracedb.get_labels(graceid) == ['NOT_GRB']
    grb = modified(noise, date='2019-12-14T16:20:00',
                   params={'Most_Likely_Index': 4, 'Most_Likely_Prob': 90})
    assert external_triggers.handle(grb) == graceid
    assert gracedb.get_labels(graceid) == []
    assert any('RAVEN: no superevents' in comment
               for comment in log_comments(graceid))


def test_first_fermi_alert_is_not_grb_until_a_position_follows(eager):
    alert = read('fermi_initial_grb_gcn.xml')
    graceid = external_triggers.handle(alert)
    assert gracedb.get_labels(graceid) == ['NOT_GRB']
    assert not any('RAVEN' in comment for comment in log_comments(graceid))
    ground = modified(alert, params={'Packet_Type': 112}, ra=20.0, dec=30.0,
                      radius=4.0, date='2018-05-24T18:36:30')
    assert external_triggers.handle(ground) == graceid
    assert gracedb.get_labels(graceid) == []
    assert 'fermi_skymap.fits.gz' in log_files(graceid)
    assert any('RAVEN: no superevents' in comment
               for comment in log_comments(graceid))


@pytest.mark.parametrize('payload', [
    b'garbage',
    read('swift_grb_gcn.xml')[:2000],
    read('swift_grb_gcn.xml').replace(b'name="TrigID"', b'name="X"'),
    read('swift_grb_gcn.xml').replace(b'value="61"', b'value="62"', 1),
])
def test_malformed_notice_is_logged_and_creates_nothing(eager, payload,
                                                         caplog):
    with caplog.at_level(logging.ERROR):
        assert external_triggers.handle(payload) is None
    assert 'Rejected a GCN notice' in caplog.text
    assert external_events() == []


# --- coincidences ------------------------------------------------------


def notice_then_superevent(name, offset, far, **kwargs):
    """Record a sample notice, then a superevent with ``t_0`` `offset`
    seconds after the trigger, and run the search from the superevent's
    side. Return the external event's graceid and the superevent id."""
    graceid = external_triggers.handle(read(name))
    t_ext = gracedb.get_event(graceid)['gpstime']
    superevent = gw_superevent(t_ext + offset, far, **kwargs)
    raven.handle_superevent(new_superevent_alert(superevent))
    return graceid, superevent['superevent_id']


def test_grb_then_superevent(eager):
    # GRB 1.7 s after the merger, as GRB 170817A after GW170817.
    graceid, sid = notice_then_superevent('fermi_grb_gcn.xml', -1.7, 1e-9)
    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] == graceid
    assert superevent['em_events'] == [graceid]
    assert superevent['time_coinc_far'] == pytest.approx(6 * GRB_RATE * 1e-9)
    assert superevent['space_coinc_far'] is None  # no GW sky map
    assert {'EM_COINC', 'RAVEN_ALERT'} <= set(superevent['labels'])
    assert {'EM_COINC', 'RAVEN_ALERT'} <= set(gracedb.get_labels(graceid))
    result = json.loads(gracedb.download('coincidence_far.json', sid))
    assert result['temporal_coinc_far'] == pytest.approx(
        6 * GRB_RATE * 1e-9)
    assert result['window'] == [-5, 1]
    assert any(graceid in comment for comment in log_comments(sid))
    assert any(sid in comment and 'RAVEN' in comment
               for comment in log_comments(graceid))


def upload_gw_skymap(graceid, ra, dec, radius):
    """A flat GW sky map (a disk) in the log of a superevent."""
    prob = external_skymaps.disk(ra, dec, radius, 64)
    gracedb.upload(external_skymaps._fits_bytes(prob), 'bayestar.fits.gz',
                   graceid, 'GW sky map', tags=['sky_loc'])
    return np.count_nonzero(prob)


def test_superevent_then_grb_with_both_sky_maps(eager):
    payload = read('swift_grb_gcn.xml')
    t_grb = 1346594743.76
    superevent = gw_superevent(t_grb - 3.0, far=2e-8)
    sid = superevent['superevent_id']
    n_gw = upload_gw_skymap(sid, 268.87, -20.3153, 10.0)
    raven.handle_superevent(new_superevent_alert(superevent))
    assert 'EM_COINC' not in gracedb.get_superevent(sid)['labels']

    graceid = external_triggers.handle(payload)
    superevent = gracedb.get_superevent(sid)
    time_far = 6 * GRB_RATE * 2e-8
    # The Swift disk lies inside the GW disk: the overlap integral is
    # 4 pi / (area of the GW disk) = Npix / (pixels of the GW disk).
    overlap = hp.nside2npix(64) / n_gw
    assert superevent['em_type'] == graceid
    assert superevent['time_coinc_far'] == pytest.approx(time_far)
    assert superevent['space_coinc_far'] == pytest.approx(time_far / overlap)
    result = json.loads(gracedb.download('coincidence_far.json', sid))
    assert result['skymap_overlap'] == pytest.approx(overlap)
    # 1.2e-12 Hz * 6 passes 1/(60 days)
    assert 'RAVEN_ALERT' in superevent['labels']


def test_gw_skymap_arriving_later_adds_the_space_time_far(eager):
    graceid, sid = notice_then_superevent('fermi_grb_gcn.xml', 0.5, 1e-7)
    assert gracedb.get_superevent(sid)['space_coinc_far'] is None

    # The GW map is uniform over the sky: the overlap integral is 1.
    uniform = np.full(hp.nside2npix(16), 1 / hp.nside2npix(16))
    entry = gracedb.upload(external_skymaps._fits_bytes(uniform),
                           'bayestar.fits.gz', sid, 'GW sky map',
                           tags=['sky_loc'])
    raven.handle_superevent({'uid': sid, 'alert_type': 'log', 'data': entry,
                             'object': gracedb.get_superevent(sid)})
    superevent = gracedb.get_superevent(sid)
    time_far = 6 * GRB_RATE * 1e-7
    assert superevent['time_coinc_far'] == pytest.approx(time_far)
    assert superevent['space_coinc_far'] == pytest.approx(time_far)
    assert log_files(sid).count('coincidence_far.json') == 2

    # The same computation again writes nothing.
    entries = len(gracedb.get_log(sid))
    raven.handle_superevent({'uid': sid, 'alert_type': 'update',
                             'data': superevent, 'object': superevent})
    assert len(gracedb.get_log(sid)) == entries


def test_outside_the_window_no_link(eager):
    # The GRB 2 s before the merger: outside [-1 s, +5 s] for a CBC.
    graceid, sid = notice_then_superevent('fermi_grb_gcn.xml', 2.0, 1e-9)
    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] is None
    assert superevent['em_events'] == []
    assert superevent['time_coinc_far'] is None
    assert 'EM_COINC' not in superevent['labels']
    assert 'EM_COINC' not in gracedb.get_labels(graceid)
    assert any('RAVEN: no external triggers' in comment
               for comment in log_comments(sid))


def test_burst_superevent_and_subthreshold_grb(eager):
    payload = read('fermi_subthresh_grb_gcn.xml')
    t_grb = 1241021806.22
    # Burst window: the GW up to 600 s before the GRB.
    superevent = gw_superevent(t_grb - 300, far=1e-10, pipeline='CWB',
                               group='Burst')
    sid = superevent['superevent_id']
    graceid = external_triggers.handle(payload)
    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] == graceid
    assert superevent['time_coinc_far'] == pytest.approx(
        660 * SUBGRB_RATE * 1e-10)
    assert 'EM_COINC' in superevent['labels']


def test_insignificant_coincidence_gets_no_raven_alert(eager):
    _, sid = notice_then_superevent('fermi_grb_gcn.xml', -1.0, 1e-3)
    superevent = gracedb.get_superevent(sid)
    # 6 s * 311/yr * 1e-3 Hz = 5.9e-8 Hz; times 6 > 1/(60 days)
    assert superevent['time_coinc_far'] == pytest.approx(
        6 * GRB_RATE * 1e-3)
    assert 'EM_COINC' in superevent['labels']
    assert 'RAVEN_ALERT' not in superevent['labels']


def test_snews_coincidence(eager):
    graceid, sid = notice_then_superevent('snews_gcn.xml', 8.0, 1e-6,
                                          pipeline='CWB', group='Burst')
    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] == graceid
    assert superevent['time_coinc_far'] == pytest.approx(
        20 * SNEWS_RATE * 1e-6)


def test_noise_trigger_is_not_a_counterpart(eager):
    _, sid = notice_then_superevent('fermi_noise_gcn.xml', -1.0, 1e-9)
    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] is None
    assert 'EM_COINC' not in superevent['labels']


def test_most_significant_coincidence_sets_em_type(eager):
    fermi, sid = notice_then_superevent('fermi_grb_gcn.xml', -1.0, 1e-9)
    # A sub-threshold GRB (higher background rate) at the same time is
    # linked and labelled but does not replace the Fermi GRB.
    subthreshold = modified(read('fermi_subthresh_grb_gcn.xml'),
                            isotime='2018-05-24T09:58:27.31Z')
    other = external_triggers.handle(subthreshold)
    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] == fermi
    assert sorted(superevent['em_events']) == sorted([fermi, other])
    assert superevent['time_coinc_far'] == pytest.approx(6 * GRB_RATE * 1e-9)
    assert 'EM_COINC' in gracedb.get_labels(other)


def test_integral_notices_of_one_trigger_update_one_event(eager):
    """INTEGRAL's TrigID is 0 in every notice: the trigger number in the
    IVORN keeps the wakeup and the refined position of one trigger on one
    event, and another trigger on another."""
    wakeup = read('built/integral_wakeup_gcn.xml')
    refined = modified(
        wakeup, date='2023-05-11T13:10:00', ra=266.5, dec=-29.1,
        radius=0.02, params={'Packet_Type': 54},
        ivorn='ivo://nasa.gsfc.gcn/INTEGRAL#Refined_Pos_9121-0-110')
    graceid = external_triggers.handle(wakeup)
    assert external_triggers.handle(refined) == graceid
    event = gracedb.get_event(graceid)
    assert event['extra_attributes']['GRB']['trigger_id'] == '9121'
    assert event['extra_attributes']['GRB']['ra'] == 266.5
    other = external_triggers.handle(read('built/integral_offline_gcn.xml'))
    assert other != graceid
    assert sorted(e['extra_attributes']['GRB']['trigger_id']
                  for e in external_events()) == ['9121', '9123']


def test_test_and_real_notices_of_one_trigger_stay_apart(eager):
    real = external_triggers.handle(read('snews_gcn.xml'))
    test = external_triggers.handle(read('snews_gcn_test.xml'))
    assert real.startswith('E') and test.startswith('T')
    assert external_triggers.handle(read('snews_gcn_test.xml')) == test
    assert len(external_events()) == 2


def test_mock_data_challenge_notice_becomes_an_mdc_event(eager):
    payload = modified(read('fermi_grb_gcn.xml'),
                       ivorn='ivo://nasa.gsfc.gcn/Fermi#MDC-test_event_1')
    graceid = external_triggers.handle(payload)
    event = gracedb.get_event(graceid)
    assert graceid.startswith('M')
    assert (event['group'], event['pipeline'], event['search']) == (
        'External', 'Fermi', 'MDC')
    assert external_triggers.handle(payload) == graceid
