"""Held messages are leased (:mod:`gwcelery.util.broker_lease`) and
acknowledged across a broker restart
(:mod:`gwcelery.util.broker_transport`): a live worker keeps its
messages however long it holds them, a dead worker's come back within
seconds, and a Redis restart neither stops a worker nor loses or repeats
its tasks. The workers run with a lease of 3 s renewed every 0.5 s."""

import os
import time

import pytest
import redis

from bench.faults_workers import DONE_KEY, RECORD, STARTED_KEY
from gwcelery.util.broker_lease import renew
from gwcelery.util.redis_server import RedisServer

from .conftest import drop_connections
from .listener_support import wait_for

VISIBILITY_TIMEOUT = 3

SHORT_LEASES = {
    'broker_transport_options': {
        'visibility_timeout': VISIBILITY_TIMEOUT,
        'unacked_restore_interval': 1, 'unacked_restore_throttle': 1,
        'unacked_mutex_expire': 5},
    'broker_lease_renew_interval': 0.5,
}


def numbers(url, key):
    """The task numbers recorded in the list `key`."""
    client = redis.Redis.from_url(url)
    try:
        return [int(item.split()[0]) for item in client.lrange(key, 0, -1)]
    finally:
        client.close()


def test_renewal_stamps_only_messages_still_held(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.zadd('unacked_index', {'held': 100.0, 'other': 100.0})
    assert renew(client, 'unacked_index', {'held', 'acknowledged'},
                 now=500.0) == 2
    assert client.zscore('unacked_index', 'held') == 500.0
    assert client.zscore('unacked_index', 'other') == 100.0
    # A message acknowledged (or given back) meanwhile is not resurrected.
    assert client.zscore('unacked_index', 'acknowledged') is None
    client.close()


@pytest.fixture
def leased_worker(start_worker, worker_settings):
    """Start a ``celery`` worker of the recording tasks with short leases."""
    worker_settings.update(SHORT_LEASES)

    def start(name, *extra):
        return start_worker(name, 'celery', '--include',
                            'bench.faults_workers', *extra)
    return start


@pytest.mark.integration
def test_a_task_held_longer_than_the_lease_runs_once(leased_worker,
                                                     redis_url):
    leased_worker('holder', '--concurrency', '2')
    RECORD['celery'].delay(1, 4 * VISIBILITY_TIMEOUT)
    # Given back while it runs, the free pool process would start it
    # again at once.
    wait_for(lambda: numbers(redis_url, DONE_KEY), 60,
             message='the long task to complete')
    assert numbers(redis_url, STARTED_KEY) == [1]


@pytest.mark.integration
def test_a_countdown_outlasting_the_lease_runs_once(leased_worker,
                                                    redis_url):
    leased_worker('timer', '--concurrency', '2')
    RECORD['celery'].apply_async((2, 0.1), countdown=3 * VISIBILITY_TIMEOUT)
    wait_for(lambda: numbers(redis_url, DONE_KEY), 60,
             message='the delayed task to complete')
    time.sleep(VISIBILITY_TIMEOUT + 1)  # a copy given back would run now
    assert numbers(redis_url, STARTED_KEY) == [2]


@pytest.mark.integration
def test_messages_of_a_killed_worker_return_within_seconds(
        leased_worker, start_worker, redis_url):
    victim = leased_worker('victim', '--concurrency', '2')
    # Any consumer gives back lapsed messages, whatever its queue.
    start_worker('bystander', 'superevent', '--concurrency', '1')
    RECORD['celery'].delay(3, 5.0)
    RECORD['celery'].apply_async((4, 0.1), countdown=15)
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: numbers(redis_url, STARTED_KEY) == [3]
             and client.zcard('unacked_index') == 2, 30,
             message='the task to start and the timer to be held')
    victim.process.kill()  # the main process, as the OOM killer would
    victim.process.wait()
    killed = time.monotonic()
    wait_for(lambda: client.llen('celery') == 2, 60,
             message='both messages back in their queue')
    assert time.monotonic() - killed < 30
    assert client.zcard('unacked_index') == 0
    client.close()
    leased_worker('heir', '--concurrency', '2')
    wait_for(lambda: sorted(numbers(redis_url, DONE_KEY)) == [3, 4], 60,
             message='both tasks to complete')
    assert sorted(numbers(redis_url, STARTED_KEY)) == [3, 3, 4]


@pytest.fixture
def own_redis(tmp_path, broker_app, worker_settings, monkeypatch):
    """A persistent Redis of the test's own, to be killed and restarted,
    as the broker and backend of the app and of the workers."""
    server = RedisServer(data_dir=str(tmp_path / 'redis'), persistent=True)
    server.start()
    for key in ('broker_url', 'result_backend'):
        monkeypatch.setitem(broker_app.conf, key, server.url)
        monkeypatch.setenv(f'CELERY_{key.upper()}', server.url)
        worker_settings[key] = server.url
    drop_connections(broker_app)
    yield server
    server.stop()
    drop_connections(broker_app)


@pytest.mark.integration
def test_a_worker_rides_out_a_redis_restart(own_redis, leased_worker):
    worker = leased_worker('rider', '--concurrency', '2')
    RECORD['celery'].delay(5, 4.0)
    RECORD['celery'].delay(6, 4.0)
    RECORD['celery'].apply_async((7, 0.1), countdown=6)
    wait_for(lambda: sorted(numbers(own_redis.url, STARTED_KEY)) == [5, 6],
             30, message='both tasks to start')
    own_redis.process.kill()
    own_redis.process.wait()
    time.sleep(2)
    own_redis.start()
    wait_for(lambda: sorted(numbers(own_redis.url, DONE_KEY)) == [5, 6, 7],
             60, message='every task to complete')
    time.sleep(VISIBILITY_TIMEOUT + 1)  # a copy given back would run now
    assert worker.process.poll() is None, worker.log()
    assert sorted(numbers(own_redis.url, STARTED_KEY)) == [5, 6, 7]
    assert sorted(numbers(own_redis.url, DONE_KEY)) == [5, 6, 7]
    assert 'Unrecoverable error' not in worker.log()
    client = redis.Redis.from_url(own_redis.url)
    wait_for(lambda: client.hlen('unacked') == 0, 30,
             message='every message to be acknowledged')
    client.close()
    assert os.path.exists(own_redis.logfile)
