"""Fault injection on a worker (short version of
``bench/faults_workers.py``): the pool process running an ``acks_late``,
``reject_on_worker_lost`` task is SIGKILLed; the task runs again at once
and completes exactly once."""

import os
import signal
import time

import pytest
import redis

from bench.faults_workers import DONE_KEY, RECORD, STARTED_KEY

from .listener_support import wait_for

pytestmark = pytest.mark.integration


def items(redis_url, key):
    client = redis.Redis.from_url(redis_url)
    try:
        return [item.decode().split()[0]
                for item in client.lrange(key, 0, -1)]
    finally:
        client.close()


def test_killed_pool_process_task_runs_again_once(start_worker, redis_url):
    worker = start_worker('pool', 'celery', '--include',
                          'bench.faults_workers', '--concurrency', '1')
    RECORD['celery'].delay(7, 3.0)
    wait_for(lambda: items(redis_url, STARTED_KEY) == ['7'], 30,
             message='the task to start')
    pid = worker.process.pid
    with open(f'/proc/{pid}/task/{pid}/children') as children:
        pool, = [int(child) for child in children.read().split()]
    os.kill(pool, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: items(redis_url, DONE_KEY), 30,
             message='the task to run again and complete')
    assert time.monotonic() - killed < 30
    time.sleep(1)  # a duplicate would arrive now
    assert items(redis_url, STARTED_KEY) == ['7', '7']
    assert items(redis_url, DONE_KEY) == ['7']
    assert 'WorkerLostError' in worker.log()
