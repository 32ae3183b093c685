"""The superevent manager against the local GraceDB server.

The events are uploaded over HTTP, the server's alerts are read from Redis
pub/sub as the listener reads them, and the superevents are checked in
GraceDB. The tests in the first part call :func:`handle` in this process
with those alerts, in the order each scenario needs; the last one runs the
whole chain with the LVAlert listener and the serial superevent worker.
"""

import json
import time

import pytest
import redis

from gwcelery import app
from gwcelery.tasks import gracedb, superevents
from gwcelery.util.alert_stream import next_published

from .superevent_uploads import coinc_xml, cwb_json

pytestmark = pytest.mark.integration

T = 1300000000.0
COMPLETE_CBC = ('SKYMAP_READY', 'EMBRIGHT_READY', 'PASTRO_READY')


class Alerts:
    """The alerts the server publishes, read from Redis pub/sub."""

    def __init__(self, url, prefix):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(prefix + '*')
        self.prefix = prefix
        self.received = []  # (node, alert)

    def wait(self, predicate, timeout=10):
        """Return the first alert for which ``predicate(node, alert)``."""
        deadline = time.monotonic() + timeout
        position = 0
        while True:
            for node, alert in self.received[position:]:
                if predicate(node, alert):
                    return alert
            position = len(self.received)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError('no such alert')
            message = next_published(self.pubsub, min(remaining, 0.5))
            if message is not None:
                node = message['channel'].decode()[len(self.prefix):]
                self.received.append((node, json.loads(message['data'])))

    def on_pipeline_node(self, graceid, alert_type, label=None):
        """The alert of ``alert_type`` about event ``graceid`` as
        :func:`handle` receives it (on a node it listens to)."""
        return self.wait(
            lambda node, alert: node in superevents.NODES
            and alert['uid'] == graceid and alert['alert_type'] == alert_type
            and (label is None or alert['data']['name'] == label))

    def drain(self):
        """Read every alert published so far; return the new ones."""
        position = len(self.received)
        quiet_until = time.monotonic() + 0.2
        while time.monotonic() < quiet_until:
            # None also stands for a subscription message: read on until
            # nothing came for 0.2 s.
            message = next_published(self.pubsub, 0.05)
            if message is not None:
                node = message['channel'].decode()[len(self.prefix):]
                self.received.append((node, json.loads(message['data'])))
                quiet_until = time.monotonic() + 0.2
        return self.received[position:]

    def close(self):
        self.pubsub.close()
        self.client.close()


@pytest.fixture(autouse=True)
def fresh_journal(monkeypatch):
    """Each test starts like a new superevent worker process."""
    monkeypatch.setattr(superevents, '_journal', superevents.Journal())


@pytest.fixture
def alerts(gracedb, redis_url):
    recorder = Alerts(redis_url, app.conf['lvalert_redis_channel_prefix'])
    yield recorder
    recorder.close()


def upload_cbc(gpstime, snr=10.0, far=1e-10, pipeline='gstlal', group='CBC',
               search='AllSky'):
    """Upload a CBC candidate; return its graceid."""
    return gracedb.create_event(coinc_xml(gpstime, far, snr), search,
                                pipeline, group, filename='coinc.xml'
                                )['graceid']


def upload_cwb(gpstime, far=1e-10, duration=0.1):
    """Upload a cWB candidate; return its graceid."""
    return gracedb.create_event(cwb_json(gpstime, far, duration), 'AllSky',
                                'CWB', 'Burst', filename='event.json'
                                )['graceid']


def handle_new(alerts, *graceids):
    """Run :func:`handle` on the ``new`` alerts of the events, in order."""
    for graceid in graceids:
        superevents.handle(alerts.on_pipeline_node(graceid, 'new'))


def find_superevents(start, end, category='Production'):
    """The superevents of ``category`` with t_0 in [start, end], by t_0."""
    found = gracedb.get_superevents(
        f'category: {category} t_0: {start!r} .. {end!r}')
    return sorted(found, key=lambda superevent: superevent['t_0'])


def only_superevent(start, end, category='Production'):
    found = find_superevents(start, end, category)
    assert len(found) == 1, found
    return found[0]


# --- clustering ------------------------------------------------------------

def test_overlapping_events_form_one_superevent(alerts):
    g1 = upload_cbc(T, snr=10, pipeline='gstlal')
    g2 = upload_cbc(T + 0.3, snr=12, pipeline='pycbc')
    g3 = upload_cbc(T + 0.5, snr=9, pipeline='MBTA')
    handle_new(alerts, g1, g2, g3)

    superevent = only_superevent(T - 10, T + 10)
    assert sorted(superevent['gw_events']) == sorted([g1, g2, g3])
    assert superevent['preferred_event'] == g2  # the loudest
    assert superevent['t_0'] == pytest.approx(T + 0.3)
    assert superevent['t_start'] == pytest.approx(T - 1)
    assert superevent['t_end'] == pytest.approx(T + 1.5)
    assert gracedb.get_event(g3)['superevent'] == superevent['superevent_id']


def test_touching_windows_join_and_separate_windows_do_not(alerts):
    g1 = upload_cbc(T)              # [T - 1, T + 1]
    g2 = upload_cbc(T + 2, snr=9)   # [T + 1, T + 3]: touches, joins
    g3 = upload_cbc(T + 4.5)        # [T + 3.5, T + 5.5]: apart
    g4 = upload_cbc(T + 500)        # far apart
    handle_new(alerts, g1, g2, g3, g4)

    first, second, third = find_superevents(T - 10, T + 1000)
    assert sorted(first['gw_events']) == sorted([g1, g2])
    assert (first['t_start'], first['t_end']) == pytest.approx(
        (T - 1, T + 3))
    assert second['gw_events'] == [g3]
    assert (second['t_start'], second['t_0'], second['t_end']) == \
        pytest.approx((T + 3.5, T + 4.5, T + 5.5))
    assert third['gw_events'] == [g4]


def test_categories_are_kept_apart(alerts):
    production = upload_cbc(T)
    test = upload_cbc(T + 0.1, group='Test')
    mdc = upload_cbc(T + 0.2, search='MDC')
    production_2 = upload_cbc(T + 0.3, pipeline='pycbc', snr=8)
    handle_new(alerts, production, test, mdc, production_2)

    assert sorted(only_superevent(T - 10, T + 10)['gw_events']) == sorted(
        [production, production_2])
    test_superevent = only_superevent(T - 10, T + 10, 'Test')
    assert test_superevent['superevent_id'].startswith('TS')
    assert test_superevent['gw_events'] == [test]
    mdc_superevent = only_superevent(T - 10, T + 10, 'MDC')
    assert mdc_superevent['superevent_id'].startswith('MS')
    assert mdc_superevent['gw_events'] == [mdc]


def test_out_of_order_event_widens_window_backwards(alerts):
    later = upload_cbc(T + 0.5, snr=12)
    earlier = upload_cbc(T, snr=9, pipeline='pycbc')
    handle_new(alerts, later, earlier)

    superevent = only_superevent(T - 10, T + 10)
    assert sorted(superevent['gw_events']) == sorted([later, earlier])
    assert superevent['preferred_event'] == later
    assert (superevent['t_start'], superevent['t_0'], superevent['t_end']) \
        == pytest.approx((T - 1, T + 0.5, T + 1.5))


def test_cbc_event_arriving_later_replaces_burst(alerts):
    burst = upload_cwb(T, duration=0.1)  # [T - 0.1, T + 0.1]
    cbc = upload_cbc(T + 0.05, snr=9)    # [T - 0.95, T + 1.05]
    handle_new(alerts, burst, cbc)

    superevent = only_superevent(T - 10, T + 10)
    assert superevent['preferred_event'] == cbc
    assert (superevent['t_start'], superevent['t_0'], superevent['t_end']) \
        == pytest.approx((T - 0.95, T + 0.05, T + 1.05))
    assert sorted(superevent['gw_events']) == sorted([burst, cbc])


def test_events_above_far_threshold_or_without_far_are_left_out(alerts):
    noisy = upload_cbc(T, far=1e-3)
    no_far = upload_cwb(T + 0.1, far=None)
    handle_new(alerts, noisy, no_far)
    assert find_superevents(T - 10, T + 10) == []

    good = upload_cbc(T + 0.2)
    handle_new(alerts, good)
    assert only_superevent(T - 10, T + 10)['gw_events'] == [good]


# --- completeness, EM_READY, frozen superevents ----------------------------

def add_labels(alerts, graceid, labels):
    """Label an event and run :func:`handle` on each label alert."""
    for label in labels:
        gracedb.create_label(label, graceid)
        superevents.handle(
            alerts.on_pipeline_node(graceid, 'label_added', label))


def test_completed_event_becomes_preferred_and_superevent_em_ready(alerts):
    em_ready = app.conf['superevent_em_ready_label']
    loud = upload_cbc(T, snr=12)
    quiet = upload_cbc(T + 0.1, snr=9, pipeline='pycbc')
    handle_new(alerts, loud, quiet)
    superevent_id = only_superevent(T - 10, T + 10)['superevent_id']

    add_labels(alerts, quiet, COMPLETE_CBC[:2])
    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['preferred_event'] == loud  # quiet not complete yet
    assert em_ready not in superevent['labels']

    add_labels(alerts, quiet, COMPLETE_CBC[2:])
    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['preferred_event'] == quiet
    assert superevent['t_0'] == pytest.approx(T + 0.1)
    assert em_ready in superevent['labels']

    # once both are complete, the louder one wins again
    add_labels(alerts, loud, COMPLETE_CBC)
    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['preferred_event'] == loud
    assert superevent['t_0'] == pytest.approx(T)
    assert superevent['labels'].count(em_ready) == 1


def test_frozen_superevent_keeps_preferred_event(alerts):
    first = upload_cbc(T, snr=9)
    handle_new(alerts, first)
    superevent_id = only_superevent(T - 10, T + 10)['superevent_id']
    gracedb.create_label(app.conf['superevent_frozen_label'], superevent_id)

    better = upload_cbc(T + 0.5, snr=20, pipeline='pycbc')
    handle_new(alerts, better)
    add_labels(alerts, better, COMPLETE_CBC)

    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['preferred_event'] == first
    assert sorted(superevent['gw_events']) == sorted([first, better])
    assert superevent['t_end'] == pytest.approx(T + 1.5)  # still widened


# --- superevent_neighbours instead of a query -------------------------------

class CountingCalls:
    """Calls the real task and counts the calls."""

    def __init__(self, task):
        self.task = task
        self.count = 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.task(*args, **kwargs)


def test_neighbours_replace_the_query_when_warm(
        alerts, gracedb_server, monkeypatch):
    queries = CountingCalls(gracedb.get_superevents)
    monkeypatch.setattr(gracedb, 'get_superevents', queries)

    def handle_like_the_listener():
        """Hand every alert published so far on the handler's nodes to
        :func:`handle`, in order, as the listener and the serial worker
        do."""
        gracedb_server.flush_alerts()
        for node, alert in alerts.drain():
            if node in superevents.NODES:
                superevents.handle(alert)

    g1 = upload_cbc(T, snr=12)
    handle_like_the_listener()
    assert queries.count == 1  # a new process queries until an alert
    # shows its own change, which the alerts about G1 now have

    g2 = upload_cbc(T + 0.2, snr=9, pipeline='pycbc')
    handle_like_the_listener()
    assert queries.count == 1  # G2's neighbours show the superevent of G1

    # G4 and G5 come before either is handled: G5's neighbours predate
    # the superevent made for G4, which the journal adds
    g4 = upload_cbc(T + 50, snr=12)
    g5 = upload_cbc(T + 50.3, snr=9, pipeline='pycbc')
    handle_like_the_listener()
    assert queries.count == 1

    # a better event is checked against fresh data
    g3 = upload_cbc(T - 0.1, snr=15, pipeline='MBTA')
    handle_like_the_listener()
    assert queries.count == 2

    first, second = find_superevents(T - 10, T + 100)
    assert sorted(first['gw_events']) == sorted([g1, g2, g3])
    assert first['preferred_event'] == g3
    assert (first['t_start'], first['t_end']) == pytest.approx(
        (T - 1.1, T + 1.2))
    assert sorted(second['gw_events']) == sorted([g4, g5])
    assert (second['t_start'], second['t_end']) == pytest.approx(
        (T + 49, T + 51.3))


# --- redelivery ------------------------------------------------------------

def test_handling_an_alert_twice_changes_nothing(alerts):
    em_ready = app.conf['superevent_em_ready_label']
    first = upload_cbc(T, snr=9)
    second = upload_cbc(T + 0.5, snr=12, pipeline='pycbc')
    third = upload_cbc(T - 0.8, snr=8, pipeline='MBTA')
    for graceid in (first, second, third):
        alert = alerts.on_pipeline_node(graceid, 'new')
        superevents.handle(alert)
        before = only_superevent(T - 10, T + 10)
        superevents.handle(alert)  # redelivered
        assert only_superevent(T - 10, T + 10) == before
    superevent = only_superevent(T - 10, T + 10)
    assert sorted(superevent['gw_events']) == sorted([first, second, third])
    assert superevent['preferred_event'] == second
    assert (superevent['t_start'], superevent['t_end']) == pytest.approx(
        (T - 1.8, T + 1.5))

    for label in COMPLETE_CBC:
        gracedb.create_label(label, second)
    alert = alerts.on_pipeline_node(second, 'label_added', COMPLETE_CBC[-1])
    superevents.handle(alert)
    superevents.handle(alert)
    labels = gracedb.get_superevent(superevent['superevent_id'])['labels']
    assert labels.count(em_ready) == 1


# --- the whole chain -------------------------------------------------------

def wait_for(predicate, timeout=60, message='condition'):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f'timed out waiting for {message}')
        time.sleep(0.1)
    return value


def test_stream_through_listener_and_superevent_worker(
        alerts, start_worker, redis_url):
    """Uploads go through the server's alerts, the LVAlert listener (in a
    general worker) and the serial superevent worker."""
    from gwcelery.tasks import lvalert

    start_worker('superevent', 'superevent', '--concurrency', '1')
    start_worker('general', 'celery', '--concurrency', '2')
    # What Beat does every second: submit the (singleton) listener.
    lvalert.listen.delay()
    client = redis.Redis.from_url(redis_url)
    channel = app.conf['lvalert_redis_channel_prefix'] + 'cbc_gstlal'
    wait_for(lambda: client.pubsub_numsub(channel)[0][1], 30,
             'the listener to subscribe')
    client.close()

    noisy = upload_cbc(T + 0.1, far=1e-3)
    # one signal: the latest event first, the best one last
    a1 = upload_cbc(T + 0.5, snr=12)
    a2 = upload_cbc(T, snr=9, pipeline='pycbc')
    a3 = upload_cbc(T + 0.3, snr=15, pipeline='MBTA')
    test = upload_cbc(T + 0.2, group='Test')
    mdc = upload_cbc(T + 0.4, search='MDC')
    adjacent = upload_cbc(T + 3.5)
    burst = upload_cwb(T + 100)
    cbc = upload_cbc(T + 100.05, snr=8, pipeline='spiir')
    far_apart = upload_cbc(T + 1000)
    expected = (a1, a2, a3, test, mdc, adjacent, burst, cbc, far_apart)
    wait_for(lambda: all(gracedb_event_superevent(graceid)
                         for graceid in expected), 60,
             'every event to be in a superevent')

    assert gracedb.get_event(noisy)['superevent'] is None
    first, second, third, fourth = find_superevents(T - 10, T + 2000)
    assert sorted(first['gw_events']) == sorted([a1, a2, a3])
    assert first['preferred_event'] == a3
    assert (first['t_start'], first['t_0'], first['t_end']) == \
        pytest.approx((T - 1, T + 0.3, T + 1.5))
    assert second['gw_events'] == [adjacent]
    assert sorted(third['gw_events']) == sorted([burst, cbc])
    assert third['preferred_event'] == cbc
    assert fourth['gw_events'] == [far_apart]
    assert only_superevent(T - 10, T + 10, 'Test')['gw_events'] == [test]
    assert only_superevent(T - 10, T + 10, 'MDC')['gw_events'] == [mdc]

    # completing the preferred event makes the superevent EM_READY
    for label in COMPLETE_CBC:
        gracedb.create_label(label, a3)
    em_ready = app.conf['superevent_em_ready_label']
    wait_for(lambda: em_ready in gracedb.get_labels(first['superevent_id']),
             30, 'EM_READY')


def gracedb_event_superevent(graceid):
    return gracedb.get_event(graceid)['superevent']
