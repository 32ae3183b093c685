"""The eternal-task lock (gwcelery.util.eternal) against a real Redis,
in-process: ownership, expiry and renewal, duplicates, and the release by
the worker's signals."""

import itertools
import logging
import time
from types import SimpleNamespace

import pytest
from celery import signals
from celery.contrib.abortable import AbortableAsyncResult

from gwcelery import app
from gwcelery.tasks import gcn
from gwcelery.util.eternal import Backoff, EternalTask, LockStore, _Renewer


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
    assert not store.renew('k', 'b', 10)
    assert store.renew('k', 'a', 20)
    assert 19 < store.redis.ttl('k') <= 20
    assert store.release('k', 'a')
    assert store.owner('k') is None


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


def test_beat_submission_takes_the_lock_with_an_expiry(broker_app, store,
                                                       lock, monkeypatch):
    monkeypatch.setitem(app.conf, 'eternal_lock_ttl', 7.0)
    result = gcn.listen.apply_async()
    assert store.owner(lock) == result.id
    assert 6 < store.redis.ttl(lock) <= 7
    # While it is held, submitting again gives the running copy.
    assert gcn.listen.apply_async().id == result.id


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
