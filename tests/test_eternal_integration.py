"""Eternal listeners under Celery 5 with real workers and a real Beat: one
copy with several workers, take-over when a whole worker dies, warm
shutdown, each listener started once although its first message waited
longer than the lock's lifetime, and the lease kept while the copy's
process holds its GIL for seconds. (Restart after a SIGKILL of the pool
process: in the GCN and LVAlert listener tests.)"""

import os
import re
import signal
import socket
import time

import pytest
import redis

from gwcelery import app
from gwcelery.util.eternal import EternalTask

from .listener_support import (
    ETERNAL,
    WORKER_ARGS,
    active_eternal,
    listener_settings,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def lock_owners(redis_url, names=ETERNAL, queued=False):
    """Task ids holding the eternal tasks' singleton locks, by name; with
    `queued`, else the copy that Beat queued (its reservation)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        owners = {}
        for name in names:
            lock = app.tasks[name].generate_lock(name)
            owners[name] = client.get(lock) or (
                client.get(f'{lock}:queued') if queued else None)
        return owners
    finally:
        client.close()


def port_accepts(port):
    try:
        socket.create_connection(('127.0.0.1', port), 0.5).close()
    except OSError:
        return False
    return True


def lvalert_subscribed(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        prefix = app.conf['lvalert_redis_channel_prefix']
        return bool(client.pubsub_channels(f'{prefix}*'))
    finally:
        client.close()


def watch_owners(redis_url, seconds, names=ETERNAL, submit=None):
    """Every lock owner seen for each task in `seconds` (polled every 0.1
    s), calling `submit` (Beat's tick) each time if given."""
    seen = {name: set() for name in names}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if submit is not None:
            submit()
        for name, owner in lock_owners(redis_url, names).items():
            seen[name].add(owner)
        time.sleep(0.1)
    return seen


def test_one_copy_with_two_workers_and_take_over_when_a_worker_dies(
        start_worker, start_beat, worker_settings, redis_url):
    listener_settings(worker_settings, eternal_lock_ttl=3.0)
    workers = {name: start_worker(name, 'celery', *WORKER_ARGS)
               for name in ('one', 'two')}
    beat = start_beat()

    # Exactly one copy of each, over several looks, holding its lock.
    for _ in range(3):
        copies = wait_for(
            lambda: (lambda found: found if len(found) == len(ETERNAL)
                     else None)(active_eternal(workers=2)), 30,
            message='all eternal tasks')
        assert sorted(task['name'] for task in copies) == sorted(ETERNAL)
        owners = lock_owners(redis_url)
        assert {task['name']: task['id'] for task in copies} == owners
        time.sleep(0.5)

    # SIGKILL the main process of the worker that runs gcn.listen: its
    # pool processes die with it, nobody releases the locks, and they
    # expire; the other worker takes over.
    victim = running('gwcelery.tasks.gcn.listen', workers=2)
    name = victim['hostname'].split('@')[0]
    lost = [task for task in active_eternal(workers=2)
            if task['hostname'] == victim['hostname']]
    workers[name].process.kill()
    killed = time.monotonic()
    wait_for(lambda: not any(alive(task['worker_pid']) for task in lost), 10,
             message='the pool processes to die with their worker')
    survivor = next(w for n, w in workers.items() if n != name)
    taken_over = wait_for(
        lambda: (lambda found: found if len(found) == len(ETERNAL)
                 and all(task['hostname'] != victim['hostname']
                         for task in found) else None)(active_eternal()),
        30, interval=0.2, message='the other worker to take over')
    print(f'\n{len(lost)} eternal task(s) taken over '
          f'{time.monotonic() - killed:.1f} s after SIGKILL of their worker '
          f'(lock expiry 3 s)')
    assert {task['name'] for task in taken_over} == set(ETERNAL)

    # Warm shutdown: Beat first, then the worker; the listeners stop when
    # asked and free their locks.
    beat.stop()
    survivor.process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    survivor.process.wait(30)
    print(f'warm shutdown with the listeners took '
          f'{time.monotonic() - stopping:.1f} s')
    assert survivor.log().count('stopped as asked') >= len(ETERNAL)
    assert lock_owners(redis_url) == dict.fromkeys(ETERNAL)


def reservation_pttl(redis_url, names=ETERNAL):
    """Milliseconds left to the reservation of each task's queued copy."""
    client = redis.Redis.from_url(redis_url)
    try:
        left = {}
        for name in names:
            lock = app.tasks[name].generate_lock(name)
            pttl = client.pttl(f'{lock}:queued')
            # (Before the reservation had a key of its own, it was the lock.)
            left[name] = pttl if pttl > 0 else client.pttl(lock)
        return left
    finally:
        client.close()


def test_each_listener_starts_once_although_its_message_waited(
        start_worker, start_beat, worker_settings, redis_url):
    """At start-up under CPU load the worker is ready long after Beat
    queued the listeners: their first messages wait in the queue longer
    than the lock's lifetime, Beat queues more, and the last one's lock is
    about to lapse when the worker takes them. Each listener still starts
    once, keeps running, and is up at once."""
    ttl = 3.0
    settings = listener_settings(worker_settings, eternal_lock_ttl=ttl)
    # Up, but not taking the listeners' queue until they have waited.
    worker = start_worker('one', 'superevent', *WORKER_ARGS)
    start_beat()
    first = wait_for(
        lambda: (lambda owners: owners if all(owners.values()) else None)(
            lock_owners(redis_url, queued=True)), 60,
        message='Beat to queue the listeners')
    wait_for(lambda: all(
        owner != first[name] for name, owner in
        lock_owners(redis_url, queued=True).items()), 3 * ttl,
        message='Beat to queue them again (the first reservation lapsed)')
    # Less left than a renewal interval, more than the worker needs to
    # take the messages. (Beat's entries drift apart by up to a second:
    # only the VOEvent broker's is sure to be caught in that window.)
    broker = 'gwcelery.tasks.gcn.broker'
    wait_for(lambda: 400 < reservation_pttl(redis_url, [broker])[broker]
             < 900, 3 * ttl, 0.02, 'its reservation to be about to lapse')
    app.control.add_consumer('celery', reply=True, destination=[
        f'one@{os.uname().nodename}'])
    took = time.monotonic()
    up = {}
    checks = {'port': lambda: port_accepts(settings['gcn_bind_port']),
              'lvalert': lambda: lvalert_subscribed(redis_url)}

    def tick():
        """Beat's tick, ten times as often (a lapsed lock would be taken
        at once); note when the VOEvent port and LVAlert come up."""
        for name in ETERNAL:
            app.tasks[name].apply_async()
        for what, is_up in checks.items():
            if what not in up and is_up():
                up[what] = time.monotonic() - took

    seen = watch_owners(redis_url, 4 * ttl, submit=tick)
    print(f'\nafter the worker took the queue, up in (s): '
          f'{ {what: round(t, 2) for what, t in up.items()} }; lease owners '
          f'over {4 * ttl:g} s: '
          f'{ {n: len(o - {None}) for n, o in seen.items()} }')

    log = worker.log()
    for name in ETERNAL:
        assert len(seen[name] - {None}) == 1, (name, seen[name])
        assert len(re.findall(rf'{re.escape(name)}: started \(task',
                              log)) == 1, name
    assert 'singleton lock now belongs' not in log
    assert 'exited although nobody asked' not in log
    assert port_accepts(settings['gcn_bind_port'])
    assert up.keys() == checks.keys()
    assert max(up.values()) < ttl


#: A regular expression match that backtracks for seconds in one C call,
#: holding the GIL throughout (as a heavy import can, stretched by load).
GIL_HOLD = (re.compile(r'(a+)+$'), 'a' * 26 + 'b')


@app.task(base=EternalTask, bind=True, shared=False,
          name='tests.test_eternal_integration.gil_holder')
def gil_holder(self):
    """An eternal task whose loop holds its process's GIL for seconds at a
    time."""
    pattern, text = GIL_HOLD
    while not self.is_aborted():
        pattern.match(text)


def test_the_lease_is_kept_while_the_copys_process_holds_its_gil(
        start_worker, worker_settings, redis_url):
    """The copy's own renewing thread cannot run while its loop holds the
    GIL (seconds at a time, longer than the lock's lifetime less a renewal
    interval); the worker's main process renews the lease meanwhile, so
    Beat never gets to queue another copy."""
    ttl = 3.0
    listener_settings(worker_settings, eternal_lock_ttl=ttl)
    worker = start_worker('one', 'celery', '--include',
                          'tests.test_eternal_integration',
                          '--concurrency', '2')
    name = gil_holder.name
    first = gil_holder.apply_async().id
    wait_for(lambda: lock_owners(redis_url, [name])[name] == first, 30,
             message='the copy to hold its lease')
    submitted = set()
    seen = watch_owners(redis_url, 4 * ttl, [name],
                        lambda: submitted.add(gil_holder.apply_async().id))
    log = worker.log()
    assert seen[name] == {first}
    assert submitted == {first}
    assert 'singleton lock now belongs' not in log
    assert 'had lapsed' not in log
