"""Fault injection, short versions of ``bench/faults_listener.py``: the
LVAlert listener in a real worker started by a real Beat, alerts on the Redis
alert stream, and one fault per test (the listener's process killed,
Redis killed and restarted, hostile messages). Each checks that no alert
is lost and that the listener recovers by itself."""

import json
import os
import signal
import threading
import time

import pytest
import redis

from gwcelery import app
from gwcelery.util.alert_stream import AlertStream
from gwcelery.util.redis_server import RedisServer

from .conftest import drop_connections
from .listener_support import WORKER_ARGS, listener_settings, running, wait_for
from .listener_tasks import LVALERT_KEY

pytestmark = pytest.mark.integration

#: The GraceDB of the listener settings: the alerts' objects live there.
GRACEDB = 'http://127.0.0.1:9/api/'

#: A node that only the recording handler of the test workers handles.
NODE = 'test_listeners'


def alert(number):
    """The JSON text of a valid ``new`` alert of event ``G<number>``."""
    graceid = f'G{number}'
    return json.dumps({
        'uid': graceid, 'alert_type': 'new', 'data': {},
        'object': {'graceid': graceid,
                   'links': {'self': f'{GRACEDB}events/{graceid}'}}})


def publish(redis_url, messages):
    client = redis.Redis.from_url(redis_url)
    try:
        AlertStream(client).append_many((NODE, message)
                                        for message in messages)
    finally:
        client.close()


def received_uids(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(item)['uid']
                for item in client.lrange(LVALERT_KEY, 0, -1)]
    finally:
        client.close()


def start_listener(start_worker, start_beat, worker_settings):
    listener_settings(worker_settings, gracedb_url=GRACEDB)
    worker = start_worker('celery', 'celery', *WORKER_ARGS)
    start_beat()
    # Generous: the test machine may be busy.
    first = running('gwcelery.tasks.lvalert.listen', timeout=90)
    wait_for(lambda: 'LVAlert: subscribed to' in worker.log(), 60,
             message='the listener')
    return worker, first


def test_listener_killed_while_alerts_arrive(
        start_worker, start_beat, worker_settings, redis_url):
    worker, first = start_listener(start_worker, start_beat,
                                   worker_settings)
    numbers = range(60)

    def feed():
        for number in numbers:
            publish(redis_url, [alert(number)])
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(lambda: len(received_uids(redis_url)) >= 10, 30,
             message='the first alerts')
    os.kill(first['worker_pid'], signal.SIGKILL)
    killed = time.monotonic()
    feeder.join()
    expected = {f'G{number}' for number in numbers}
    wait_for(lambda: expected <= set(received_uids(redis_url)), 60,
             message='every alert, after the restart')
    recovery = time.monotonic() - killed
    uids = received_uids(redis_url)
    # At least once: the alert being handed on when the process died may
    # come twice, nothing else.
    assert len(uids) - len(expected) <= 1
    assert recovery < 30
    assert running('gwcelery.tasks.lvalert.listen',
                   timeout=60)['id'] != first['id']


@pytest.fixture
def own_redis(tmp_path, monkeypatch, worker_settings):
    """A persistent Redis of this test alone (broker, backend and alert
    stream), which the test may kill and start again on the same port."""
    server = RedisServer(data_dir=str(tmp_path / 'redis'), persistent=True)
    server.start()
    for key in ('broker_url', 'result_backend'):
        monkeypatch.setitem(app.conf, key, server.url)
        monkeypatch.setenv(f'CELERY_{key.upper()}', server.url)
    drop_connections(app)
    worker_settings.update(broker_url=server.url, result_backend=server.url)
    yield server
    server.stop()
    drop_connections(app)


def test_redis_killed_and_restarted(
        own_redis, start_worker, start_beat, worker_settings):
    url = own_redis.url
    worker, _ = start_listener(start_worker, start_beat, worker_settings)
    publish(url, [alert(number) for number in range(20)])
    wait_for(lambda: len(received_uids(url)) >= 20, 30,
             message='the alerts before the crash')

    own_redis.kill()
    time.sleep(1)
    own_redis.start()
    restarted = time.monotonic()
    # The stream, the cursor and what the handlers recorded survived in
    # the append-only file; the worker, Beat and the listener reconnect.
    assert len(received_uids(url)) >= 20
    publish(url, [alert(number) for number in range(20, 40)])
    expected = {f'G{number}' for number in range(40)}
    wait_for(lambda: expected <= set(received_uids(url)), 60,
             message='the alerts after the restart')
    assert time.monotonic() - restarted < 30
    assert len(received_uids(url)) - len(expected) <= 1


#: Hostile messages: truncated, binary, big, invalid or odd JSON, alerts of
#: another server or without their fields.
HOSTILE = [
    alert(0)[:40], b'\xff\xfe\x00binary', os.urandom(2**20), b'{"not json',
    b'[1, 2, 3]', b'null', b'"a string"', json.dumps({'uid': 'G1'}),
    alert(0).replace('127.0.0.1:9', 'gracedb.example.org'),
    json.dumps({'uid': 'G1', 'alert_type': 'new', 'object': []}),
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbb">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><a>&c;</a>',
    b'{"uid": ' * 10000]


def test_hostile_messages_do_not_stop_the_listener(
        start_worker, start_beat, worker_settings, redis_url):
    worker, first = start_listener(start_worker, start_beat,
                                   worker_settings)
    numbers = range(1000, 1030)
    for number in numbers:
        publish(redis_url, [*HOSTILE, alert(number)])
    wait_for(lambda: len(received_uids(redis_url)) >= len(numbers), 60,
             message='every valid alert')
    assert received_uids(redis_url) == [f'G{number}' for number in numbers]
    assert running('gwcelery.tasks.lvalert.listen')['id'] == first['id']
    assert worker.log().count('LVAlert: skipping a message') >= \
        len(numbers) * (len(HOSTILE) - 1)
