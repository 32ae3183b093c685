"""Eternal listeners under Celery 5 with real workers and a real Beat: one
copy with several workers, take-over when a whole worker dies, warm
shutdown. (Restart after a SIGKILL of the pool process: in the GCN and
LVAlert listener tests.)"""

import os
import signal
import time

import pytest
import redis

from gwcelery import app

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


def lock_owners(redis_url):
    """Task ids holding the eternal tasks' singleton locks, by name."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {name: client.get(app.tasks[name].generate_lock(name))
                for name in ETERNAL}
    finally:
        client.close()


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
