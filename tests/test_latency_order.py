"""The order of the localisations on the openmp queue
(:mod:`gwcelery.tasks.localization_order`): the superevent manager's
ranking decides, a real openmp worker over a real Redis carries it out."""

import time

import pytest
from gracedb_sdk import Client

from gwcelery.tasks import first2years, localization_order
from gwcelery.tasks.localization import localize

from . import latency_tasks

INCLUDE = ('--include', 'tests.latency_tasks', '--concurrency', '1')


def _event(graceid, snr, far=1e-10, instruments='H1,L1', labels=()):
    return {'graceid': graceid, 'group': 'CBC', 'pipeline': 'gstlal',
            'far': far, 'instruments': instruments, 'labels': list(labels),
            'extra_attributes': {'CoincInspiral': {'snr': snr}}}


def _superevent(preferred):
    return {'superevent_id': 'S1', 'preferred_event': preferred['graceid'],
            'preferred_event_data': preferred}


def test_event_outside_any_superevent_may_become_preferred():
    assert localization_order.can_become_preferred(_event('G2', 8), None)


def test_preferred_event_itself():
    event = _event('G1', 8)
    assert localization_order.can_become_preferred(
        event, _superevent(event))


def test_louder_event_will_replace_a_complete_preferred_event():
    complete = _event('G1', 10, labels=('SKYMAP_READY', 'EMBRIGHT_READY',
                                        'PASTRO_READY'))
    assert localization_order.can_become_preferred(
        _event('G2', 12), _superevent(complete))


def test_quieter_or_fewer_detectors_cannot_become_preferred():
    preferred = _event('G1', 12, instruments='H1,L1,V1')
    superevent = _superevent(preferred)
    assert not localization_order.can_become_preferred(
        _event('G2', 11, instruments='H1,L1,V1'), superevent)
    assert not localization_order.can_become_preferred(
        _event('G3', 30, instruments='H1,L1'), superevent)
    # Below the public threshold loses against one above it.
    assert not localization_order.can_become_preferred(
        _event('G4', 40, far=1e-3, instruments='H1,L1,V1'), superevent)


@pytest.mark.integration
def test_alert_priority_overtakes_record_priority(start_worker):
    """Sent later, at the alert priority, a task runs before one at the
    record priority: the worker chose its next message only when free."""
    worker = start_worker('openmp', 'openmp', *INCLUDE)
    busy = latency_tasks.hold.delay(1.5)
    time.sleep(0.5)  # the worker has taken ``busy``
    record = latency_tasks.hold.apply_async(
        [0], priority=localization_order.RECORD_PRIORITY)
    alert = latency_tasks.hold.apply_async(
        [0], priority=localization_order.ALERT_PRIORITY)
    busy_began, busy_ended = busy.get(timeout=120)
    alert_began, _ = alert.get(timeout=120)
    record_began, _ = record.get(timeout=120)
    assert busy_ended <= alert_began < record_began
    # The pool process imported BAYESTAR before its first task.
    assert 'openmp worker process: BAYESTAR imported' in worker.log()


@pytest.mark.integration
def test_localization_of_a_quieter_event_waits(start_worker, gracedb):
    """A localisation whose event cannot become preferred goes back to the
    queue behind the alert-priority work that waits; it still runs."""
    client = Client(gracedb.url, force_noauth=True)
    events = {
        pipeline: client.events.create(
            filename='coinc.xml', group='CBC', pipeline=pipeline,
            search='AllSky',
            filecontents=first2years.load_candidate(0, pipeline))
        for pipeline in ('gstlal', 'pycbc')}
    loud, quiet = events['gstlal']['graceid'], events['pycbc']['graceid']
    superevent = client.superevents.create(
        t_start=events['gstlal']['gpstime'] - 1,
        t_0=events['gstlal']['gpstime'],
        t_end=events['gstlal']['gpstime'] + 1, preferred_event=loud)
    client.superevents[superevent['superevent_id']].add(quiet)
    client.events[quiet].logs.create(
        comment='PSD', filename='psd.xml.gz',
        filecontents=first2years.load_psd())
    worker = start_worker('openmp', 'openmp', *INCLUDE)

    busy = latency_tasks.hold.delay(1.5)
    time.sleep(0.5)
    localization = localize.delay({
        'uid': quiet, 'alert_type': 'log', 'object': events['pycbc'],
        'data': {'filename': 'psd.xml.gz'}})
    alert = latency_tasks.hold.delay(0)
    busy.get(timeout=120)
    alert.get(timeout=120)
    assert (f'{quiet} cannot become the preferred event of '
            f'{superevent["superevent_id"]}') in worker.log()
    # Requeued, not dropped: the worker localises it next.
    deadline = time.monotonic() + 20
    while (f'{quiet}: BAYESTAR with' not in worker.log()
           and time.monotonic() < deadline):
        time.sleep(0.2)
    assert f'{quiet}: BAYESTAR with' in worker.log()
    assert localization.state != 'SUCCESS'


def test_a_louder_event_waiting_for_its_sky_map_wins():
    """Louder than the complete preferred event, but quieter than another
    event of the superevent still to be localised: it cannot become
    preferred."""
    complete = _event('G1', 10, labels=('SKYMAP_READY', 'EMBRIGHT_READY',
                                        'PASTRO_READY'))
    superevent = _superevent(complete)
    assert localization_order.can_become_preferred(
        _event('G2', 12), superevent, [_event('G3', 11)])
    assert not localization_order.can_become_preferred(
        _event('G2', 12), superevent, [_event('G3', 15)])
