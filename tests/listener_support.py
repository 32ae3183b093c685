"""Helpers of the listener integration tests: ports, settings, waiting,
and finding the running eternal tasks (Beat: ``tests/fixtures/beat.py``)."""

import socket
import subprocess
import sys
import time

import pytest

from gwcelery import app

#: Worker options of the listener tests: the recording handlers, and room
#: for the three eternal tasks plus ordinary tasks.
WORKER_ARGS = ('--include', 'tests.listener_tasks', '--concurrency', '5')

ETERNAL = ('gwcelery.tasks.gcn.listen', 'gwcelery.tasks.gcn.broker',
           'gwcelery.tasks.lvalert.listen')


def free_port(host='127.0.0.1'):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


#: Redis list where the tests' pygcn client processes record the VOEvents
#: they receive.
PYGCN_CLIENT_KEY = 'test:pygcn-client:received'

_PYGCN_CLIENT = '''
import logging, sys
import gcn, redis
port, url, key, logfile = sys.argv[1:]
if logfile:
    logging.basicConfig(filename=logfile, level=logging.DEBUG)
client = redis.Redis.from_url(url)
gcn.listen(host='127.0.0.1', port=int(port), iamalive_timeout=30,
           handler=lambda payload, root: client.rpush(key, payload))
'''


def start_pygcn_client(port, redis_url, logfile=None):
    """Start a process that receives VOEvents with pygcn from
    ``127.0.0.1:port`` and records them in :data:`PYGCN_CLIENT_KEY` (see
    :func:`pygcn_received`); pygcn's log goes to `logfile` if given."""
    return subprocess.Popen(
        [sys.executable, '-c', _PYGCN_CLIENT, str(port), redis_url,
         PYGCN_CLIENT_KEY, str(logfile or '')])


def pygcn_received(redis_url):
    """The VOEvents that the clients of :func:`start_pygcn_client` got."""
    return redis_list(redis_url, PYGCN_CLIENT_KEY)


def redis_list(redis_url, key):
    """The items of a Redis list (what a test's helper process recorded)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return client.lrange(key, 0, -1)
    finally:
        client.close()


def wait_for(predicate, timeout, interval=0.1, message='condition'):
    """Poll `predicate` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {timeout} s waiting for {message}')
        time.sleep(interval)


def listener_settings(worker_settings, **extra):
    """Point the listeners of test workers at free ports (nothing listens
    there yet) and the LVAlert Redis transport at the test Redis."""
    settings = {
        'gcn_remote_port': free_port(),
        'gcn_bind_port': free_port(),
        'gcn_broker_accept_addresses': ['127.0.0.1'],
        'lvalert_transport': 'redis',
        'lvalert_redis_url': worker_settings['broker_url'],
        'gracedb_url': 'http://127.0.0.1:9/api/',
        'listener_reconnect_delay_max': 2.0,
        'mock_events_interval': None,
    }
    settings.update(extra)
    worker_settings.update(settings)
    for key, value in settings.items():
        app.conf[key] = value
    return settings


def active_eternal(names=ETERNAL, workers=1, timeout=1.0):
    """The running copies of the eternal tasks on the `workers` running
    workers: a list of dicts with ``name``, ``id``, ``hostname`` and
    ``worker_pid``."""
    replies = app.control.inspect(timeout=timeout,
                                  limit=workers).active() or {}
    return [dict(task, hostname=hostname)
            for hostname, tasks in replies.items() for task in tasks
            if task['name'] in names]


def running(name, workers=1, timeout=30):
    """Wait until exactly one copy of eternal task `name` runs; return it."""
    def one():
        copies = active_eternal((name,), workers)
        return copies[0] if len(copies) == 1 else None
    return wait_for(one, timeout, interval=0.2, message=f'{name} to run')
