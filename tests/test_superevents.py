"""Unit tests of the superevent manager's decisions, on GraceDB's shapes."""

import copy
import datetime
import json
import os

import pytest

from gwcelery import app
from gwcelery.tasks import superevent_rules, superevents

from .conftest import DATA_DIR

GRACEDB_DATA = os.path.join(DATA_DIR, 'gracedb')


def load(filename):
    with open(os.path.join(GRACEDB_DATA, filename)) as f:
        return json.load(f)


@pytest.fixture
def sample_events():
    """G1 (complete, SNR 7), G2 (no SKYMAP_READY, SNR 8), G3 (complete,
    SNR 10), and an External event, by graceid."""
    return {event['graceid']: event for event in load('sample_events.json')}


@pytest.fixture
def sample_superevents():
    return load('superevents.json')


@pytest.fixture
def mdc_event():
    return load('lvalert_event_creation.json')['object']


def cbc_event(graceid='G1', gpstime=1000.0, snr=10.0, far=1e-10,
              instruments='H1,L1', labels=(), pipeline='gstlal', **extra):
    return {'graceid': graceid, 'group': 'CBC', 'pipeline': pipeline,
            'search': 'AllSky', 'gpstime': gpstime, 'far': far,
            'instruments': instruments, 'offline': False,
            'labels': list(labels),
            'extra_attributes': {'CoincInspiral': {'snr': snr}}, **extra}


def cwb_event(graceid='G9', gpstime=1000.0, duration=0.25, far=1e-10,
              instruments='H1,L1', labels=()):
    return {'graceid': graceid, 'group': 'Burst', 'pipeline': 'CWB',
            'search': 'AllSky', 'gpstime': gpstime, 'far': far,
            'instruments': instruments, 'offline': False,
            'labels': list(labels),
            'extra_attributes': {'MultiBurst': {'duration': duration}}}


def superevent_of(event, superevent_id='S1', t_start=None, t_end=None,
                  labels=(), gw_events=None):
    t_0, event_start, event_end = superevent_rules.event_window(event)
    return {'superevent_id': superevent_id, 't_0': t_0,
            't_start': event_start if t_start is None else t_start,
            't_end': event_end if t_end is None else t_end,
            'preferred_event': event['graceid'],
            'preferred_event_data': event, 'labels': list(labels),
            'gw_events': gw_events or [event['graceid']]}


COMPLETE_CBC = ('SKYMAP_READY', 'EMBRIGHT_READY', 'PASTRO_READY')


# --- categories and nodes --------------------------------------------------

def test_category_of_sample_events(sample_events, sample_superevents,
                                   mdc_event):
    assert superevent_rules.event_category(sample_events['G1']) == 'Production'
    assert superevent_rules.event_category(mdc_event) == 'MDC'
    test_event = sample_superevents['S0041']['preferred_event_data']
    assert superevent_rules.event_category(test_event) == 'Test'


def test_category_of_test_group_wins_over_mdc_search():
    event = cbc_event(group='Test', search='MDC')
    assert superevent_rules.event_category(event) == 'Test'


@pytest.mark.parametrize('superevent_id,category', [
    ('S190421ar', 'Production'), ('S0041', 'Production'),
    ('TS200101a', 'Test'), ('MS220722v', 'MDC')])
def test_superevent_category(superevent_id, category):
    assert superevent_rules.superevent_category(superevent_id) == category


def test_superevent_category_rejects_an_event_id():
    with pytest.raises(ValueError, match='G1'):
        superevent_rules.superevent_category('G1')


def test_nodes_cover_every_search():
    assert set(superevents.NODES) == {
        'cbc_gstlal', 'cbc_pycbc', 'cbc_mbta', 'cbc_mbtaonline', 'cbc_spiir',
        'burst_cwb', 'burst_olib',
        'test_gstlal', 'test_pycbc', 'test_mbta', 'test_mbtaonline',
        'test_spiir', 'test_cwb', 'test_olib'}


def test_analysis_group_of_a_test_event(sample_superevents):
    test_event = sample_superevents['S0041']['preferred_event_data']
    assert test_event['group'] == 'Test'
    assert superevent_rules.analysis_group(test_event) == 'CBC'
    assert superevent_rules.analysis_group(
        dict(cwb_event(), group='Test')) == 'Burst'


# --- windows ---------------------------------------------------------------

def test_window_of_cbc_event_uses_pipeline_setting(monkeypatch, mdc_event):
    monkeypatch.setitem(app.conf, 'superevent_d_t_start', {'gstlal': 2.0})
    monkeypatch.setitem(app.conf, 'superevent_d_t_end', {'gstlal': 0.5})
    t_0 = mdc_event['gpstime']
    assert superevent_rules.event_window(mdc_event) == (
        t_0, t_0 - 2.0, t_0 + 0.5)


def test_window_defaults_to_one_second_for_cbc(sample_events):
    assert superevent_rules.event_window(cbc_event(gpstime=10.0)) == (
        10.0, 9.0, 11.0)


def test_window_of_unknown_pipeline_uses_default(monkeypatch, sample_events):
    monkeypatch.setitem(app.conf, 'superevent_default_d_t_start', 3.0)
    monkeypatch.setitem(app.conf, 'superevent_default_d_t_end', 4.0)
    # sample event G1's pipeline is called 'pipeline'
    assert superevent_rules.event_window(sample_events['G1']) == (1, -2.0, 5.0)


def test_window_of_cwb_event_is_its_duration():
    event = cwb_event(gpstime=10.0, duration=0.25)
    assert superevent_rules.event_window(event) == (10.0, 9.75, 10.25)


def test_window_of_cwb_event_without_duration_uses_default():
    event = cwb_event(gpstime=10.0, duration=None)
    assert superevent_rules.event_window(event) == (10.0, 9.0, 11.0)


def test_window_of_olib_event_is_quality_over_frequency(sample_superevents):
    event = copy.deepcopy(sample_superevents['S0040']['preferred_event_data'])
    event['extra_attributes']['LalInferenceBurst'].update(
        quality_mean=20, frequency_mean=80)
    t_0 = event['gpstime']
    assert superevent_rules.event_window(event) == (
        t_0, t_0 - 0.25, t_0 + 0.25)


# --- completeness and thresholds -------------------------------------------

def test_complete_sample_events(sample_events):
    assert superevent_rules.is_complete(sample_events['G1'])
    assert not superevent_rules.is_complete(sample_events['G2'])  # no sky map
    assert superevent_rules.is_complete(sample_events['G3'])


def test_burst_needs_only_a_sky_map():
    assert not superevent_rules.is_complete(cwb_event())
    assert superevent_rules.is_complete(cwb_event(labels=['SKYMAP_READY']))


def test_required_labels_by_pipeline_override_group(monkeypatch):
    monkeypatch.setitem(app.conf, 'superevent_required_labels', {
        'CBC': ['SKYMAP_READY', 'PASTRO_READY'], 'spiir': ['SKYMAP_READY']})
    assert superevent_rules.is_complete(
        cbc_event(pipeline='spiir', labels=['SKYMAP_READY']))
    assert not superevent_rules.is_complete(cbc_event(labels=['SKYMAP_READY']))


def test_old_format_labels_dict_is_no_labels(sample_superevents):
    event = sample_superevents['S0040']['preferred_event_data']
    assert event['labels'] == {}
    assert not superevent_rules.is_complete(event)


@pytest.mark.parametrize('changes,passes', [
    ({}, True),
    ({'offline': True}, False),
    ({'labels': ['INJ']}, False),
    # 5 x 4e-8 Hz is over once per 60 days (1.93e-7 Hz); 5 x 3e-8 is not
    ({'far': 4e-8}, False),
    ({'far': 3e-8}, True),
    ({'far': None}, False),
])
def test_public_threshold_for_cbc(changes, passes):
    event = dict(cbc_event(far=1e-10), **changes)
    assert superevent_rules.passes_public_threshold(event) is passes


def test_public_threshold_uses_burst_trials_factor():
    # 4 x 4e-8 Hz passes for Burst, 5 x 4e-8 Hz does not for CBC
    assert superevent_rules.passes_public_threshold(cwb_event(far=4e-8))
    assert not superevent_rules.passes_public_threshold(cbc_event(far=4e-8))


# --- ranking ---------------------------------------------------------------

def best(*events):
    return max(events, key=superevent_rules.ranking_key)['graceid']


def test_ranking_of_sample_events(sample_events):
    # G2 is the loudest but has no sky map; of the complete ones, G3 has
    # the higher SNR
    g1, g2, g3 = (sample_events[key] for key in ('G1', 'G2', 'G3'))
    assert best(g1, g2, g3) == 'G3'
    assert best(g1, g2) == 'G1'


def test_complete_beats_public_threshold():
    complete = cbc_event('G1', far=1e-6, labels=COMPLETE_CBC)
    significant = cbc_event('G2', far=1e-12)
    assert best(complete, significant) == 'G1'


def test_public_threshold_beats_group():
    burst = cwb_event('G1', far=1e-12)
    cbc = cbc_event('G2', far=1e-6, snr=30)
    assert best(burst, cbc) == 'G1'


def test_cbc_beats_burst():
    assert best(cwb_event('G1', far=1e-15), cbc_event('G2', far=1e-9)) == 'G2'


def test_more_detectors_beat_snr():
    assert best(cbc_event('G1', snr=30),
                cbc_event('G2', snr=8, instruments='H1,L1,V1')) == 'G2'


def test_snr_decides_between_cbc_events():
    assert best(cbc_event('G1', snr=9), cbc_event('G2', snr=12)) == 'G2'


def test_snr_from_single_detectors_when_coinc_has_none():
    event = cbc_event('G2', snr=None)
    event['extra_attributes']['SingleInspiral'] = [{'snr': 6}, {'snr': 8}]
    assert best(cbc_event('G1', snr=9.9), event) == 'G2'  # 10 > 9.9


def test_lower_far_decides_between_burst_events():
    assert best(cwb_event('G1', far=1e-9), cwb_event('G2', far=1e-10)) == 'G2'


def test_ranking_of_superevent_preferred_events(sample_superevents):
    events = [superevent['preferred_event_data']
              for superevent in sample_superevents.values()]
    # none is complete and all pass the threshold; of the CBC events,
    # T0217 is the one with three detectors
    assert best(*events) == 'T0217'


# --- choosing the superevent -----------------------------------------------

def test_member_superevent(sample_superevents):
    candidates = list(sample_superevents.values())
    assert superevent_rules.member_superevent(candidates, 'T0218')[
        'superevent_id'] == 'S0041'
    assert superevent_rules.member_superevent(candidates, 'G1') is None


def test_overlapping_superevent_picks_earliest_t_0():
    later = superevent_of(cbc_event('G2', gpstime=1001.5), 'S2')
    earlier = superevent_of(cbc_event('G1', gpstime=1000.0), 'S1')
    assert superevent_rules.overlapping_superevent(
        [later, earlier], 'Production', 1000.5, 1000.7) is earlier
    assert superevent_rules.overlapping_superevent(
        [later, earlier], 'Production', 1002.1, 1003) is later


def test_touching_windows_overlap():
    superevent = superevent_of(cbc_event(gpstime=1000.0))  # [999, 1001]
    assert superevent_rules.overlapping_superevent(
        [superevent], 'Production', 1001.0, 1003.0) is superevent
    assert superevent_rules.overlapping_superevent(
        [superevent], 'Production', 1001.001, 1003.0) is None
    assert superevent_rules.overlapping_superevent(
        [superevent], 'Production', 997.0, 998.999) is None


def test_overlapping_superevent_of_other_category_is_ignored():
    test_superevent = superevent_of(cbc_event(gpstime=1000.0), 'TS1')
    assert superevent_rules.overlapping_superevent(
        [test_superevent], 'Production', 999.0, 1001.0) is None
    assert superevent_rules.overlapping_superevent(
        [test_superevent], 'Test', 999.0, 1001.0) is test_superevent


# --- updating the superevent -----------------------------------------------

def test_weaker_event_inside_window_changes_nothing():
    superevent = superevent_of(cbc_event('G1', gpstime=1000.0, snr=12),
                               t_start=998.0, t_end=1002.0)
    weaker = cbc_event('G2', gpstime=1000.2, snr=9)
    changes, preferred = superevent_rules.plan_update(superevent, weaker)
    assert changes == {}
    assert preferred['graceid'] == 'G1'


def test_window_widens_to_the_union():
    superevent = superevent_of(cbc_event('G1', gpstime=1000.0, snr=12))
    later = cbc_event('G2', gpstime=1001.5, snr=9)
    assert superevent_rules.plan_update(superevent, later)[0] == {
        't_end': 1002.5}
    earlier = cbc_event('G3', gpstime=998.5, snr=9)
    assert superevent_rules.plan_update(superevent, earlier)[0] == {
        't_start': 997.5}
    wide = cwb_event('G4', gpstime=1000.0, duration=5.0, far=1e-6)
    assert superevent_rules.plan_update(superevent, wide)[0] == {
        't_start': 995.0, 't_end': 1005.0}


def test_window_never_shrinks():
    superevent = superevent_of(cwb_event('G1', gpstime=1000.0, duration=5),
                               t_start=990.0, t_end=1010.0)
    changes, _ = superevent_rules.plan_update(
        superevent, cwb_event('G2', gpstime=1000.0, duration=1, far=1e-6))
    assert changes == {}


def test_better_event_becomes_preferred_and_moves_t_0():
    superevent = superevent_of(cbc_event('G1', gpstime=1000.0, snr=9))
    better = cbc_event('G2', gpstime=1000.4, snr=12)
    changes, preferred = superevent_rules.plan_update(superevent, better)
    assert changes == {'preferred_event': 'G2', 't_0': 1000.4,
                       't_end': 1001.4}
    assert preferred is better


def test_equal_event_does_not_replace_preferred():
    superevent = superevent_of(cbc_event('G1', gpstime=1000.0, snr=9))
    changes, preferred = superevent_rules.plan_update(
        superevent, cbc_event('G2', gpstime=1000.0, snr=9))
    assert changes == {}
    assert preferred['graceid'] == 'G1'


def test_frozen_superevent_keeps_preferred_but_widens():
    frozen = app.conf.superevent_frozen_label
    superevent = superevent_of(cbc_event('G1', gpstime=1000.0, snr=9),
                               labels=[frozen])
    better = cbc_event('G2', gpstime=1000.4, snr=12, labels=COMPLETE_CBC)
    changes, preferred = superevent_rules.plan_update(superevent, better)
    assert changes == {'t_end': 1001.4}
    assert preferred['graceid'] == 'G1'


def test_preferred_event_becoming_complete_is_seen_from_the_alert():
    superevent = superevent_of(cbc_event('G1', gpstime=1000.0))
    completed = cbc_event('G1', gpstime=1000.0, labels=COMPLETE_CBC)
    changes, preferred = superevent_rules.plan_update(superevent, completed)
    assert changes == {}
    assert superevent_rules.is_complete(preferred)


def test_completed_event_replaces_louder_incomplete_preferred(sample_events):
    g2 = sample_events['G2']  # SNR 8, no sky map
    superevent = superevent_of(g2, t_start=0, gw_events=['G1', 'G2'])
    g1 = sample_events['G1']  # SNR 7, complete
    changes, preferred = superevent_rules.plan_update(superevent, g1)
    assert changes == {'preferred_event': 'G1', 't_0': 1}
    assert preferred is g1


# --- the decision as a whole -------------------------------------------------

def test_plan_creates_when_nothing_overlaps():
    event = cbc_event('G2', gpstime=1010.0)
    nearby = superevent_of(cbc_event('G1', gpstime=1000.0))
    assert superevent_rules.plan(event, [nearby]) == (None, True, {}, event)


def test_plan_joins_the_overlapping_superevent():
    target = superevent_of(cbc_event('G1', gpstime=1000.0, snr=12))
    event = cbc_event('G2', gpstime=1000.5, snr=9)
    assert superevent_rules.plan(event, [target]) == (
        target, True, {'t_end': 1001.5}, target['preferred_event_data'])


def test_plan_for_an_event_already_in_a_superevent():
    member = cbc_event('G2', gpstime=1000.5, snr=9, labels=COMPLETE_CBC)
    target = superevent_of(cbc_event('G1', gpstime=1000.0, snr=12),
                           t_end=1001.5, gw_events=['G1', 'G2'])
    superevent, joining, changes, preferred = superevent_rules.plan(
        member, [target])
    assert (superevent, joining, changes) == (
        target, False, {'preferred_event': 'G2', 't_0': 1000.5})
    assert preferred is member


# --- the journal of this process's own changes ------------------------------

def neighbours_of(*superevent_dicts):
    return {superevent['superevent_id']: superevent
            for superevent in superevent_dicts}


def alert_showing(*superevent_dicts, alert_type='added_to_superevent'):
    """An event alert whose neighbours are the given superevents."""
    return {'alert_type': alert_type, 'uid': 'G99', 'object': {
        'graceid': 'G99',
        'superevent_neighbours': neighbours_of(*superevent_dicts)}}


def warm_journal(*superevent_dicts):
    journal = superevents.Journal()
    for superevent in superevent_dicts:
        journal.record(superevent, changed=True)
    journal.saw(alert_showing(superevent_dicts[0]))
    assert journal.warm
    return journal


def test_journal_trusts_no_snapshot_before_an_alert_shows_its_change():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = superevents.Journal()
    journal.record(s1, changed=True)
    event = cbc_event('G2', gpstime=1000.5,
                      superevent_neighbours=neighbours_of(s1))
    assert journal.candidates(event) is None
    # alerts made before the change
    journal.saw(alert_showing())
    journal.saw(alert_showing(dict(s1, gw_events=[])))
    assert journal.candidates(event) is None
    # an alert made after it
    journal.saw(alert_showing(s1, alert_type='new'))
    assert journal.candidates(event) == [s1]


def created_alert(created):
    return {'alert_type': 'new', 'uid': 'G99',
            'object': {'graceid': 'G99', 'created': created}}


def test_journal_trusts_snapshots_of_events_created_after_its_start(
        monkeypatch):
    start = datetime.datetime(2026, 11, 23, 4, 0, 0,
                              tzinfo=datetime.timezone.utc).timestamp()
    monkeypatch.setattr(superevents.time, 'time', lambda: start)
    journal = superevents.Journal()
    # Created in the same second, or in the next: the clocks may differ.
    journal.saw(created_alert('2026-11-23 04:00:00 UTC'))
    journal.saw(created_alert('2026-11-23 04:00:01 UTC'))
    journal.saw({**created_alert(None), 'object': {'graceid': 'G99'}})
    journal.saw(created_alert('not a time'))
    assert not journal.warm
    journal.saw(created_alert('2026-11-23 04:00:02 UTC'))
    assert journal.warm
    # After a failed change, only what is created after it counts.
    monkeypatch.setattr(superevents.time, 'time', lambda: start + 60)
    journal.forget()
    journal.saw(created_alert('2026-11-23 04:00:02 UTC'))
    assert not journal.warm
    journal.saw(created_alert('2026-11-23 04:01:02 UTC'))
    assert journal.warm


def test_journal_starts_with_its_first_alert_not_its_creation(monkeypatch):
    """A prefork parent imports the module long before a child (maybe a
    replacement of one that died half-way) gets its first task."""
    now = [datetime.datetime(2026, 11, 23, 4, 0, 0,
                             tzinfo=datetime.timezone.utc).timestamp()]
    monkeypatch.setattr(superevents.time, 'time', lambda: now[0])
    journal = superevents.Journal()
    now[0] += 3600
    journal.saw(created_alert('2026-11-23 04:30:00 UTC'))
    assert not journal.warm


def test_journal_is_not_warmed_by_a_superevent_it_only_read():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = superevents.Journal()
    journal.record(s1, changed=False)
    journal.saw(alert_showing(s1))
    assert not journal.warm


def test_journal_takes_the_snapshot_as_it_is_without_own_changes():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    far = superevent_of(cbc_event('G6', gpstime=1500.0), 'S6')
    journal = warm_journal(far)
    other = superevent_of(cbc_event('G5', gpstime=1050.0), 'S5')
    event = cbc_event('G2', gpstime=1000.5,
                      superevent_neighbours=neighbours_of(s1, other))
    assert journal.candidates(event) == [s1, other]


def test_journal_adds_a_superevent_made_after_the_snapshot():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = warm_journal(s1)
    event = cbc_event('G2', gpstime=1000.5, superevent_neighbours={})
    assert journal.candidates(event) == [s1]
    # not one of another category
    test_event = dict(event, group='Test')
    assert journal.candidates(test_event) == []


def test_journal_replaces_a_superevent_changed_after_the_snapshot():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = warm_journal(s1)
    widened = dict(s1, t_end=1001.5, gw_events=['G1', 'G3'])
    journal.record(widened, changed=True)
    event = cbc_event('G2', gpstime=1000.5,
                      superevent_neighbours=neighbours_of(s1))
    assert journal.candidates(event) == [widened]


def test_journal_drops_a_superevent_whose_t_0_moved_away():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = warm_journal(s1)
    moved = dict(s1, t_0=1200.0, t_end=1201.0)
    journal.record(moved, changed=True)
    event = cbc_event('G2', gpstime=1000.5,
                      superevent_neighbours=neighbours_of(s1))
    assert journal.candidates(event) == []


def test_journal_rejects_an_event_it_already_handled():
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = warm_journal(s1)
    event = cbc_event('G1', gpstime=1000.0, superevent_neighbours={})
    assert journal.candidates(event) is None


def test_journal_needs_neighbours_covering_the_query_range(monkeypatch):
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = warm_journal(s1)
    event = cbc_event('G2', gpstime=1000.5,
                      superevent_neighbours=neighbours_of(s1))
    monkeypatch.setitem(app.conf, 'superevent_query_d_t_end', 200.0)
    assert journal.candidates(event) is None
    monkeypatch.setitem(app.conf, 'superevent_query_d_t_end', 10.0)
    assert journal.candidates(event) == [s1]
    # an alert from a server that gives no neighbours
    del event['superevent_neighbours']
    assert journal.candidates(event) is None


def test_journal_keeps_a_bounded_number_of_superevents():
    journal = superevents.Journal(size=2)
    for number in range(3):
        journal.record(superevent_of(
            cbc_event(f'G{number}', gpstime=1000.0 + 100 * number),
            f'S{number}'), changed=True)
    assert list(journal.superevents) == ['S1', 'S2']


def test_journal_forgets_after_a_failed_change(monkeypatch):
    s1 = superevent_of(cbc_event('G1', gpstime=1000.0))
    journal = warm_journal(s1)
    monkeypatch.setattr(superevents, '_journal', journal)

    # nothing listens there: the request fails to connect
    monkeypatch.setitem(app.conf, 'gracedb_url', 'http://127.0.0.1:9/api/')
    event = cbc_event('G2', gpstime=1000.5, snr=9)
    with pytest.raises(superevents.gracedb.GraceDbUnavailable):
        superevents.apply(event, *superevent_rules.plan(event, [s1]))
    assert not journal.warm
    assert journal.candidates(dict(event, superevent_neighbours={})) is None
