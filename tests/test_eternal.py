"""The eternal-task locks (gwcelery.util.eternal, eternal_locks) against a
real Redis, in-process: reservations and leases, expiry and renewal,
duplicates, a copy that waited in the queue (also beside CPU and GIL hogs),
and the release by the worker's signals."""

import contextlib
import itertools
import logging
import os
import random
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import redis
from celery import signals
from celery.contrib.abortable import AbortableAsyncResult

from gwcelery import app
from gwcelery.tasks import gcn
from gwcelery.util.eternal import Backoff, EternalTask, LockStore, _Renewer
from gwcelery.util.eternal_locks import (
    LOST,
    RENEWED,
    RETRY_DELAY,
    TAKEN,
    LeaseRenewer,
    reservation_key,
)

from .listener_support import wait_for


@pytest.fixture
def store(broker_app):
    return LockStore(broker_app.conf.result_backend)


@pytest.fixture
def lock(broker_app):
    """The lock key of gcn.listen (an eternal task)."""
    return gcn.listen.generate_lock(gcn.listen.name)


def test_only_the_owner_releases_or_renews(store):
    assert store.acquire('k', 'a', 10)
    assert not store.acquire('k', 'b', 10)
    assert store.owner('k') == 'a'
    assert not store.release('k', 'b')
    assert store.claim('k', 'b', 10) == LOST
    assert store.claim('k', 'a', 20) == RENEWED
    assert 19 < store.redis.ttl('k') <= 20
    assert store.release('k', 'a')
    assert store.owner('k') is None


def test_beat_reserves_only_while_no_copy_runs_or_waits(store):
    assert store.reserve('k', 'queued', 10)
    assert not store.reserve('k', 'later', 10)  # one queued copy at a time
    assert store.holder('k') == 'queued'
    assert store.owner('k') is None  # queued is not running
    # Its reservation lapsed and Beat queued another: whichever copy
    # starts first runs, and the other exits when it arrives.
    store.redis.set(reservation_key('k'), 'later')
    assert store.claim('k', 'queued', 10) == TAKEN
    assert store.claim('k', 'later', 10) == LOST
    store.drop_reservation('k')
    assert not store.reserve('k', 'next', 10)  # a copy runs
    assert store.holder('k') == 'queued'


def test_a_starting_copy_drops_its_reservation_and_frees_all_at_the_end(
        store):
    assert store.reserve('k', 'a', 10)
    assert store.claim('k', 'a', 10) == TAKEN
    assert store.redis.get(reservation_key('k')) is None
    assert store.release('k', 'a')
    assert store.holder('k') is None
    # A queued copy revoked before it ran frees its reservation.
    assert store.reserve('k', 'revoked', 10)
    assert store.release('k', 'revoked')
    assert store.reserve('k', 'next', 10)


def test_locks_expire_unless_renewed(store):
    assert store.acquire('k', 'a', 0.3)
    renewer = _Renewer(store, 'k', 'a', 0.3, 'test')
    renewer.start()
    time.sleep(0.8)
    assert store.owner('k') == 'a'
    renewer.stop()
    time.sleep(0.5)
    assert store.owner('k') is None
    assert not renewer.lost.is_set()


def test_a_renewer_notices_that_its_lock_was_taken(store):
    assert store.acquire('k', 'a', 0.3)
    renewer = _Renewer(store, 'k', 'a', 0.3, 'test')
    renewer.start()
    store.redis.set('k', 'b')
    assert renewer.lost.wait(2)
    renewer.stop()
    assert store.owner('k') == 'b'


def test_a_renewer_takes_back_a_lapsed_lease_that_nobody_took(store,
                                                              caplog):
    assert store.acquire('k', 'a', 0.3)
    renewer = _Renewer(store, 'k', 'a', 0.3, 'test')
    renewer.start()
    try:
        store.redis.delete('k')  # as if it had lapsed
        wait_for(lambda: renewer.lapses == 1, 2, 0.02, 'the lease back')
        assert store.owner('k') == 'a'
        assert not renewer.lost.is_set()
        assert 'had lapsed' in caplog.text
    finally:
        renewer.stop()


def test_a_failed_renewal_is_tried_again_within_a_second(store,
                                                        monkeypatch):
    renewer = LeaseRenewer(store, 'k', 'a', 30, 'test')

    def unreachable(*args):
        raise redis.ConnectionError('Redis is down')

    monkeypatch.setattr(store, 'claim', unreachable)
    assert renewer.renew_once() == RETRY_DELAY
    assert not renewer.lost.is_set()


def test_the_lock_client_gives_up_within_a_renewal_interval(broker_app,
                                                           monkeypatch):
    monkeypatch.setitem(app.conf, 'eternal_lock_ttl', 15.0)
    pool = gcn.listen.lock_store.redis.connection_pool
    assert pool.connection_kwargs['socket_timeout'] == 5.0


def test_beat_submission_reserves_the_task_with_an_expiry(broker_app, store,
                                                          lock, monkeypatch):
    monkeypatch.setitem(app.conf, 'eternal_lock_ttl', 7.0)
    result = gcn.listen.apply_async()
    assert store.owner(lock) is None  # queued, not running
    assert store.holder(lock) == result.id
    assert 6 < store.redis.ttl(reservation_key(lock)) <= 7
    # While it is queued, submitting again gives the queued copy...
    assert gcn.listen.apply_async().id == result.id
    # ... and while a copy runs, the running one.
    store.redis.delete(reservation_key(lock))
    assert store.claim(lock, 'running', 7) == TAKEN
    assert gcn.listen.apply_async().id == 'running'


def test_a_copy_that_finds_another_running_exits_at_once(broker_app, store,
                                                         lock, caplog):
    store.acquire(lock, 'other-copy', 30)
    start = time.monotonic()
    with caplog.at_level(logging.INFO):
        gcn.listen.apply(task_id='late-copy')
    assert time.monotonic() - start < 1
    assert store.owner(lock) == 'other-copy'
    assert 'another copy (task other-copy) is running' in caplog.text


def test_a_copy_holds_the_lock_while_it_runs_and_frees_it_when_aborted(
        broker_app, store, lock, monkeypatch, caplog):
    # Abort the copy before it starts: its loop returns at once.
    AbortableAsyncResult('the-copy', app=app).abort()
    owners = []
    original = gcn.listen.run

    def run():
        owners.append(store.owner(lock))
        return original()

    monkeypatch.setattr(gcn.listen, 'run', run)
    with caplog.at_level(logging.INFO):
        gcn.listen.apply(task_id='the-copy')
    assert owners == ['the-copy']  # taken although nobody submitted it
    assert store.owner(lock) is None
    assert 'stopped as asked (task the-copy)' in caplog.text


def test_the_worker_signals_release_only_the_dead_copys_lock(store, lock):
    store.acquire(lock, 'dead', 30)
    signals.task_failure.send(sender=gcn.listen, task_id='other', args=[],
                              kwargs={}, exception=None, traceback=None,
                              einfo=None)
    assert store.owner(lock) == 'dead'
    signals.task_failure.send(sender=gcn.listen, task_id='dead', args=[],
                              kwargs={}, exception=None, traceback=None,
                              einfo=None)
    assert store.owner(lock) is None

    store.acquire(lock, 'revoked', 30)
    request = SimpleNamespace(id='revoked', args=[], kwargs={})
    signals.task_revoked.send(sender=gcn.listen, request=request,
                              terminated=True, signum=9, expired=False)
    assert store.owner(lock) is None


def test_the_signals_leave_ordinary_tasks_alone(store):
    assert not isinstance(gcn.send, EternalTask)
    store.acquire('unrelated', 'x', 30)
    signals.task_failure.send(sender=gcn.send, task_id='x', args=[],
                              kwargs={}, exception=None, traceback=None,
                              einfo=None)
    assert store.owner('unrelated') == 'x'


def test_the_listeners_are_eternal_and_scheduled_every_second():
    schedule = app.conf.beat_schedule
    for task in (gcn.listen, gcn.broker):
        assert isinstance(task, EternalTask)
        assert schedule[f'eternal {task.name}']['schedule'] == 1.0


def test_backoff_doubles_up_to_a_limit_and_resets():
    backoff = Backoff(1, 5)
    assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next() == 1


@app.task(base=EternalTask, bind=True, shared=False,
          name='tests.test_eternal.poller')
def poller(self):
    """Ask whether aborted until it is; return how often it asked."""
    calls = 0
    while not self.is_aborted():
        calls += 1
        if calls == 1000:
            AbortableAsyncResult(self.request.id, app=app).abort()
    return calls


@pytest.mark.usefixtures('broker_app')
def test_a_running_copy_asks_the_backend_about_aborts_once_a_second(
        monkeypatch):
    queries = []
    original = AbortableAsyncResult.is_aborted

    def counted(result):
        queries.append(time.monotonic())
        return original(result)

    monkeypatch.setattr(AbortableAsyncResult, 'is_aborted', counted)
    started = time.monotonic()
    calls = poller.apply(task_id='the-poller').get()
    elapsed = time.monotonic() - started
    # The last query is the end-of-run check, outside the loop.
    in_loop = queries[:-1]
    assert calls >= 1000
    assert elapsed < 3
    assert 2 <= len(in_loop) <= 2 + elapsed  # the abort came after 1000
    assert all(later - earlier >= 0.99
               for earlier, later in itertools.pairwise(in_loop))


# --- a copy that waited in the queue ----------------------------------------

@app.task(base=EternalTask, bind=True, shared=False,
          name='tests.test_eternal.sitter')
def sitter(self):
    """Run until aborted, like a listener waiting for packets."""
    while not self.is_aborted():
        time.sleep(0.02)


@contextlib.contextmanager
def running_copy(task, task_id):
    """Run copy `task_id` of eternal task `task` in a thread (as a pool
    process would); abort it and wait for it on the way out."""
    thread = threading.Thread(target=task.apply, daemon=True,
                              kwargs={'task_id': task_id})
    thread.start()
    try:
        yield thread
    finally:
        AbortableAsyncResult(task_id, app=app).abort()
        thread.join(10)
        assert not thread.is_alive()


def beat_ticks(task, seconds, interval=0.1):
    """Submit `task` as Beat does, every `interval` s for `seconds`; yield
    each result's id (the copy queued or running)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield task.apply_async().id
        time.sleep(interval)


def run_after_queue_wait(store, ttl, waited, watched):
    """Beat submits :func:`sitter`; its message waits `waited` lifetimes
    of the lock (`ttl` s) in the queue while Beat goes on ticking; then
    the copy runs for `watched` lifetimes, Beat still ticking. Returns
    (the first copy's id, the ids Beat queued while it waited, the lease
    owners and the ids Beat returned while it ran, the longest time
    between two renewals)."""
    lock = sitter.generate_lock(sitter.name)
    first = sitter.apply_async().id
    queued = set(beat_ticks(sitter, waited * ttl)) - {first}
    with running_copy(sitter, first):
        wait_for(lambda: sitter._renewer is not None, 5, 0.01,
                 'the copy to start')
        renewer = sitter._renewer
        owners, submitted, longest = set(), set(), 0.0
        for task_id in beat_ticks(sitter, watched * ttl):
            submitted.add(task_id)
            owners.add(store.owner(lock))
            longest = max(longest, time.monotonic() - renewer.renewed)
        assert not renewer.lost.is_set()
        assert renewer.lapses == 0
        # The copies queued while it waited exit when they arrive.
        for task_id in queued:
            sitter.apply(task_id=task_id)
        assert store.owner(lock) == first
    return first, queued, owners, submitted, longest


@pytest.mark.parametrize('waited', [0.8, 1.5])
def test_a_copy_that_waited_in_the_queue_runs_once_and_keeps_its_lease(
        broker_app, store, monkeypatch, caplog, waited):
    """A worker slow to start (CPU load at start-up) or a backlog keeps
    the copy that Beat queued waiting; its reservation lapses meanwhile
    (1.5) or soon after it starts (0.8), and Beat queues another. The
    first copy to run keeps running, and Beat queues nothing more."""
    ttl = 1.0
    monkeypatch.setitem(app.conf, 'eternal_lock_ttl', ttl)
    with caplog.at_level(logging.INFO):
        first, queued, owners, submitted, longest = run_after_queue_wait(
            store, ttl, waited, 3)
    assert owners == {first}
    assert submitted == {first}
    assert caplog.text.count(f'{sitter.name}: started') == 1
    assert caplog.text.count('another copy') == len(queued)
    assert longest < ttl


@pytest.fixture
def cpu_hogs():
    """One busy process more than there are cores, killed afterwards."""
    hogs = []
    try:
        for _ in range((os.cpu_count() or 1) + 1):
            hogs.append(subprocess.Popen(
                [sys.executable, '-c', 'while True: pass']))
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


@pytest.fixture
def gil_hog():
    """A thread of this process that holds the GIL for ten ms or so at a
    time (one C call: sorting a shuffled list), as a listener's own work
    does (parsing a packet). Holds of seconds are for the worker's renewal:
    ``test_the_lease_is_kept_while_the_copys_process_holds_its_gil``."""
    numbers = list(range(100_000))
    random.shuffle(numbers)
    stop = threading.Event()

    def hog():
        while not stop.is_set():
            sorted(numbers)

    thread = threading.Thread(target=hog, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)


def test_the_lease_is_kept_beside_cpu_and_gil_hogs(
        broker_app, store, monkeypatch, cpu_hogs, gil_hog):
    """Under CPU load (more busy processes than cores, and a thread that
    takes the GIL in the copy's own process) a copy that waited most of a
    lifetime in the queue keeps its lease, renewed by its own thread within
    the lifetime every time: Beat never queues another copy."""
    ttl = 3.0
    monkeypatch.setitem(app.conf, 'eternal_lock_ttl', ttl)
    first, _, owners, submitted, longest = run_after_queue_wait(
        store, ttl, 0.8, 2)
    print(f'\nlongest time between two renewals {longest:.2f} s '
          f'(every {ttl / 3:.2f} s due; load {os.getloadavg()[0]:.1f})')
    assert owners == {first}
    assert submitted == {first}
    assert longest < ttl
