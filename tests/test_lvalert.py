"""LVAlert messages: decoding, filtering by GraceDB server, dispatch by
node, in-process."""

import json
import logging
import os
import threading
import time

import pytest
from celery.contrib.abortable import AbortableAsyncResult

from gwcelery import app
from gwcelery.tasks import lvalert
from gwcelery.util.dispatch import DispatchTable

from .conftest import DATA_DIR
from .listener_support import wait_for

RECEIVED = []


@app.task(shared=False)
def record_alert(alert):
    """Handler of the tests: remember the alert."""
    RECEIVED.append(alert)


@pytest.fixture
def handled(monkeypatch):
    """Eager mode, the configured GraceDB of the sample alerts, and a
    private handler table in which :func:`record_alert` handles
    ``cbc_gstlal`` and ``superevent``; returns the alerts it got."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'gracedb_url',
                        'https://gracedb.ligo.org/api/')
    table = DispatchTable()
    monkeypatch.setattr(lvalert, '_handlers', table)
    table.register(record_alert, 'cbc_gstlal', 'superevent')
    RECEIVED.clear()
    return RECEIVED


def load(name):
    with open(os.path.join(DATA_DIR, 'gracedb', name)) as f:
        return f.read()


def test_an_alert_of_our_server_reaches_the_handlers_of_its_node(handled):
    text = load('lvalert_event_creation.json')
    assert lvalert.process_message('cbc_gstlal', text) is not None
    assert handled == [json.loads(text)]
    # Bytes (as Redis delivers them) too.
    lvalert.process_message('cbc_gstlal', text.encode())
    assert len(handled) == 2


def test_older_alerts_with_object_self_are_accepted(handled):
    lvalert.process_message('superevent', load('igwn_alert_voevent.json'))
    assert handled[0]['uid'] == 'M297123'


@pytest.mark.parametrize('url,ours', [
    ('https://gracedb.ligo.org/api/', True),
    ('https://gracedb.ligo.org/api/v2/', True),
    ('https://gracedb.ligo.org/api', True),
    ('https://gracedb-playground.ligo.org/api/', False),
    ('http://gracedb.ligo.org/api/', False),
    ('https://gracedb.ligo.org:8443/api/', False),
])
def test_alerts_of_other_servers_are_ignored(url, ours, handled, monkeypatch,
                                             caplog):
    monkeypatch.setitem(app.conf, 'gracedb_url', url)
    with caplog.at_level(logging.INFO):
        lvalert.process_message('cbc_gstlal',
                                load('lvalert_event_creation.json'))
    assert bool(handled) == ours
    assert ('ignoring new M394156 on cbc_gstlal: it comes from '
            'https://gracedb.ligo.org/api/events/M394156'
            in caplog.text) != ours


@pytest.mark.parametrize('text,reason', [
    ('{"uid": "G1", ', 'not JSON'),
    (b'\xff\xfe\x00junk', 'not JSON'),
    ('', 'not JSON'),
    ('[1, 2]', 'a JSON list, not an object'),
    ('{"uid": "G1", "object": {}}', 'missing alert_type'),
    ('{"uid": "G1", "alert_type": "new", "object": 3}',
     '"object" is not an object'),
    ('{"uid": "G1", "alert_type": "new", "object": {"links": {}}}',
     'no links.self'),
    ('{"uid": ' * 10000, 'not JSON'),  # nested deeper than json goes
])
def test_malformed_messages_are_logged_and_skipped(text, reason, handled,
                                                   caplog):
    with caplog.at_level(logging.WARNING):
        assert lvalert.process_message('cbc_gstlal', text) is None
    assert handled == []
    assert reason in caplog.text
    assert 'on cbc_gstlal' in caplog.text


def test_nodes_without_handlers_are_ignored(handled, caplog):
    with caplog.at_level(logging.DEBUG, logger='gwcelery.tasks.lvalert'):
        assert lvalert.process_message(
            'burst_cwb', load('lvalert_event_creation.json')) is None
    assert handled == []
    assert 'no handler for new alerts on node burst_cwb' in caplog.text


def test_handler_registers_a_task_for_each_node(monkeypatch):
    table = DispatchTable()
    monkeypatch.setattr(lvalert, '_handlers', table)

    @lvalert.handler('cbc_gstlal', 'cbc_pycbc', shared=False,
                     name='tests.test_lvalert.cbc')
    def cbc(alert):
        pass

    assert lvalert.nodes_handled() == ['cbc_gstlal', 'cbc_pycbc']
    assert table.tasks('cbc_pycbc') == [cbc]
    with pytest.raises(TypeError):
        lvalert.handler()


def test_handler_gets_only_the_alert_types_it_asks_for(handled,
                                                        monkeypatch):
    new_only = []

    @lvalert.handler('cbc_gstlal', alert_types=('new',), shared=False,
                     name='tests.test_lvalert.new_only')
    def record_new(alert):
        new_only.append(alert['alert_type'])

    creation = json.loads(load('lvalert_event_creation.json'))
    log_alert = {**creation, 'alert_type': 'log',
                 'data': {'filename': 'psd.xml.gz'}}
    assert lvalert.process_message('cbc_gstlal', json.dumps(log_alert))
    assert new_only == []
    assert [alert['alert_type'] for alert in handled] == ['log']
    lvalert.process_message('cbc_gstlal', json.dumps(creation))
    assert new_only == ['new']
    assert [alert['alert_type'] for alert in handled] == ['log', 'new']


def test_an_alert_no_handler_accepts_is_not_dispatched(handled,
                                                       monkeypatch, caplog):
    table = DispatchTable()
    monkeypatch.setattr(lvalert, '_handlers', table)
    table.register(record_alert, 'cbc_gstlal',
                   accepts=lambda alert: alert['alert_type'] == 'log')
    with caplog.at_level(logging.DEBUG, logger='gwcelery.tasks.lvalert'):
        assert lvalert.process_message(
            'cbc_gstlal', load('lvalert_event_creation.json')) is None
    assert handled == []
    assert 'no handler for new alerts on node cbc_gstlal' in caplog.text



@pytest.mark.integration
def test_xmpp_listener_reconnects_after_the_server_restarts(
        handled, broker_app, tmp_path, monkeypatch, caplog):
    """lvalert.listen in a thread of this process against a prosody of its
    own, which is stopped and started again; a node that appears later is
    subscribed to."""
    from .fixtures.xmpp import XMPPServer

    server = XMPPServer(tmp_path).start()
    task_id = 'xmpp-reconnect-test'
    thread = threading.Thread(
        target=lvalert.listen.apply, kwargs={'task_id': task_id})
    try:
        server.create_nodes('cbc_gstlal')
        for key, value in dict(server.settings,
                               listener_reconnect_delay_max=1.0,
                               lvalert_resubscribe_interval=1.0).items():
            monkeypatch.setitem(app.conf, key, value)
        with caplog.at_level(logging.INFO):
            thread.start()
            wait_for(lambda: 'subscribed to node cbc_gstlal' in caplog.text,
                     20)
            server.publish('cbc_gstlal', load('lvalert_event_creation.json'))
            wait_for(lambda: len(handled) == 1, 20)

            server.stop()
            wait_for(lambda: 'disconnected from the XMPP server'
                     in caplog.text, 20)
            caplog.clear()
            server.start_process()
            wait_for(lambda: 'subscribed to node cbc_gstlal' in caplog.text,
                     30)
            server.publish('cbc_gstlal', load('lvalert_event_creation.json'))
            wait_for(lambda: len(handled) == 2, 20)

            # A node created later is subscribed to at the next attempt.
            assert 'cannot subscribe to node superevent (item-not-found)' \
                in caplog.text
            server.create_nodes('superevent')
            wait_for(lambda: 'subscribed to node superevent' in caplog.text,
                     20)
            server.publish('superevent', load('igwn_alert_voevent.json'))
            wait_for(lambda: len(handled) == 3, 20)
    finally:
        AbortableAsyncResult(task_id, app=app).abort()
        if thread.is_alive():
            thread.join(15)
        server.stop()
    assert not thread.is_alive()


def test_alert_stream_keeps_messages_after_the_cursor(redis_url):
    """What the listener reads: the entries after its saved cursor, in
    order; the pub/sub copy goes to the node's channel."""
    import redis

    from gwcelery.util.alert_stream import AlertStream

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe('lvalert:cbc_gstlal')
    stream = AlertStream(client)
    start = stream.cursor(max_age=60)
    first, second = stream.append_many([('cbc_gstlal', b'one'),
                                        ('superevent', b'two')])
    assert stream.read_after(start) == [(first, 'cbc_gstlal', b'one'),
                                        (second, 'superevent', b'two')]
    stream.save_cursor(first)
    assert stream.cursor(max_age=60) == first
    assert stream.read_after(stream.cursor(60)) == [
        (second, 'superevent', b'two')]
    assert wait_for(lambda: pubsub.get_message(timeout=0.1), 5)['data'] \
        == b'one'
    pubsub.close()
    client.close()


class SplittingRedis:
    """A TCP server that answers SUBSCRIBE as Redis does, then sends one
    published message in two parts `delay` s apart: what a reader sees
    when a large alert spans TCP segments."""

    def __init__(self, channel, data, delay):
        import socket

        self.channel, self.data, self.delay = channel, data, delay
        self.done = threading.Event()
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def bulk(value):
        return b'$%d\r\n%s\r\n' % (len(value), value)

    def serve(self):
        connection, _ = self.listener.accept()
        self.connections += 1
        with connection:
            connection.recv(65536)  # SUBSCRIBE channel
            connection.sendall(b'*3\r\n' + self.bulk(b'subscribe')
                               + self.bulk(self.channel) + b':1\r\n')
            message = (b'*3\r\n' + self.bulk(b'message')
                       + self.bulk(self.channel) + self.bulk(self.data))
            half = len(message) // 2
            connection.sendall(message[:half])
            time.sleep(self.delay)
            connection.sendall(message[half:])
            self.done.wait(10)

    def close(self):
        self.done.set()
        self.thread.join(10)
        self.listener.close()


def test_a_message_that_has_partly_arrived_is_read_whole():
    import redis

    from gwcelery.util.alert_stream import next_published

    server = SplittingRedis(b'lvalert:superevent', b'x' * 5000, delay=0.3)
    client = redis.Redis(port=server.port, protocol=2, lib_name=None,
                         lib_version=None)  # no handshake to answer
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe('lvalert:superevent')
        assert next_published(pubsub, 5) is None  # the confirmation
        # The first half is there: a poll reads the message whole.
        assert pubsub.connection.can_read(5)
        started = time.monotonic()
        message = next_published(pubsub, 0)
        assert message['data'] == b'x' * 5000
        assert time.monotonic() - started < 5
        assert server.connections == 1
    finally:
        pubsub.close()
        client.close()
        server.close()


def test_next_published_reads_again_after_a_redis_restart(tmp_path):
    import redis

    from gwcelery.util.alert_stream import next_published
    from gwcelery.util.redis_server import RedisServer

    server = RedisServer(data_dir=str(tmp_path / 'redis')).start()
    client = redis.Redis.from_url(server.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe('lvalert:node')
        assert next_published(pubsub, 1) is None  # the confirmation
        server.process.kill()
        server.process.wait()
        with pytest.raises(redis.ConnectionError):
            next_published(pubsub, 1)
        server.start()
        # The next calls find the dead socket gone: they reconnect, and
        # subscribe again (its confirmation reads as None).
        deadline = time.monotonic() + 10
        message = None
        while message is None and time.monotonic() < deadline:
            client.publish('lvalert:node', 'back')
            message = next_published(pubsub, 0.5)
        assert message['data'] == b'back'
    finally:
        pubsub.close()
        client.close()
        server.stop()
