"""Dead letters: the list in a real Redis, and the transports that use it
(the Redis alert stream, the GCN VOEvent connection, XMPP on a real
prosody) meeting hostile messages followed by valid ones; a broker that is
really down is retried, not dead-lettered."""

import base64
import functools
import json
import logging
import os
import socket
import threading
import time

import kombu.exceptions
import kombu.utils.json
import pytest
import redis

from gwcelery import app
from gwcelery.tasks import gcn as gcn_tasks
from gwcelery.tasks import lvalert
from gwcelery.util import alert_stream, dead_letters, lvalert_xmpp
from gwcelery.util import voevent_transport as vtp
from gwcelery.util.dead_letters import DeadLetters, RetryQueue
from gwcelery.util.dispatch import DispatchTable
from gwcelery.util.eternal import Backoff
from gwcelery.util.redis_server import RedisServer, free_port

from .conftest import DATA_DIR, drop_connections
from .listener_support import wait_for

#: The hostile message of the issue: JSON nested 100,000 deep.
DEEP_JSON = '[' * 100000 + ']' * 100000
NOT_UTF8 = b'\xff\xfe\x00junk'
ALERT = open(os.path.join(DATA_DIR, 'gracedb', 'lvalert_event_creation.json'),
             'rb').read()
VOEVENT = open(os.path.join(DATA_DIR, 'gcn', 'fermi_grb_gcn.xml'),
               'rb').read()
RECEIVED = []


@app.task(shared=False)
def record_message(message):
    """Handler of the tests: remember the alert or the VOEvent."""
    RECEIVED.append(message)


class Task:
    """A stand-in for an eternal task, aborted by :meth:`abort`."""

    def __init__(self):
        self.aborted = threading.Event()

    def is_aborted(self):
        return self.aborted.is_set()

    def abort(self):
        self.aborted.set()


def run_in_thread(function, *args):
    """Start ``function(task, *args)`` in a thread; return (task, thread)."""
    task = Task()
    thread = threading.Thread(target=function, args=(task, *args),
                              daemon=True)
    thread.start()
    return task, thread


def stop(task, thread):
    task.abort()
    thread.join(30)
    assert not thread.is_alive()


@pytest.fixture
def handled(broker_app, monkeypatch):
    """Eager mode, the GraceDB of the sample alert, private handler tables
    (:func:`record_message` handles ``cbc_gstlal`` alerts and the sample
    VOEvent's type); the dead letters go to the test Redis. Returns the
    list of what the handler got."""
    for key, value in {'task_always_eager': True,
                       'task_eager_propagates': True,
                       'gracedb_url': 'https://gracedb.ligo.org/api/',
                       'lvalert_redis_url': broker_app.conf.broker_url,
                       'listener_reconnect_delay_min': 0.1,
                       'listener_reconnect_delay_max': 0.5}.items():
        monkeypatch.setitem(app.conf, key, value)
    alerts = DispatchTable()
    alerts.register(record_message, 'cbc_gstlal')
    monkeypatch.setattr(lvalert, '_handlers', alerts)
    notices = DispatchTable(normalize=gcn_tasks.NoticeType)
    notices.register(record_message,
                     gcn_tasks.notice_type(vtp.parse(VOEVENT)))
    monkeypatch.setattr(gcn_tasks, '_handlers', notices)
    RECEIVED.clear()
    return RECEIVED


def letters_of(url):
    """Every dead letter kept in the Redis of `url`, oldest first."""
    return dead_letters.read(url, 1000)[::-1]


def strict(node, text):
    """The LVAlert listeners' process_message."""
    return lvalert.process_message(
        node, text, broker_errors=dead_letters.BROKER_ERRORS, strict=True)


# --- the list ---------------------------------------------------------------

def test_records_keep_text_bytes_and_nothing_bounded(redis_url):
    client = redis.Redis.from_url(redis_url)
    big = 'x' + 'é' * 40000  # 80,001 bytes: 64 kB end inside a character
    for payload in (big, NOT_UTF8, None):
        assert dead_letters.record(client, 'test', 'why', payload,
                                   max_length=2, topic='t', offset=7)
    assert dead_letters.count(client) == 2  # trimmed
    raw, tombstone = dead_letters.read(redis_url, 5)[::-1]
    assert raw['payload']['encoding'] == 'base64'
    assert base64.b64decode(raw['payload']['data']) == NOT_UTF8
    assert raw['where'] == {'topic': 't', 'offset': 7}
    assert raw['reason'] == 'why' and raw['transport'] == 'test'
    assert tombstone['payload'] == {'encoding': None, 'data': None,
                                    'length': 0, 'truncated': False}
    text = dead_letters.payload_record(big)
    assert text['encoding'] == 'text' and text['truncated']
    assert text['length'] == 80001
    assert big.startswith(text['data'])
    assert len(text['data'].encode()) <= dead_letters.MAX_PAYLOAD
    client.close()


def test_a_redis_that_is_down_costs_a_log_line_not_the_transport(caplog):
    letters = DeadLetters(f'redis://127.0.0.1:{free_port()}/0')
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert not letters.reject('test', ValueError('bad'), b'payload',
                                  node='n')
    assert time.monotonic() - started < 5
    # One line, at ERROR: the message is lost but for it.
    errors = [r.getMessage() for r in caplog.records]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert 'ValueError: bad' in errors[0] and 'not kept' in errors[0]
    assert "b'payload'" not in errors[0] and "'payload'" in errors[0]


def test_the_reason_of_a_deep_recursion_is_one_short_line():
    with pytest.raises(RecursionError) as info:
        json.loads(DEEP_JSON)
    reason = dead_letters.reason_of(info.value)
    assert reason.startswith('RecursionError: maximum recursion depth')
    assert '\n' not in reason
    assert len(reason) <= dead_letters.MAX_REASON


def test_broker_errors_include_what_celery_raises_from_them():
    assert dead_letters.is_broker_error(
        kombu.exceptions.OperationalError('refused'))
    try:
        try:
            raise redis.ConnectionError('refused')
        except redis.ConnectionError as exc:
            raise RuntimeError('Retry limit exceeded') from exc
    except RuntimeError as exc:
        assert dead_letters.is_broker_error(exc)
    for error in (RecursionError(), TypeError(), UnicodeDecodeError(
            'utf-8', b'\xff', 0, 1, 'bad'), MemoryError(), KeyError('x')):
        assert not dead_letters.is_broker_error(error)


def test_retry_queue_waits_for_the_broker_and_rejects_the_rest(redis_url):
    done = []
    broker_up = False

    def hand_on(name):
        if not broker_up:
            raise kombu.exceptions.OperationalError('connection refused')
        if name == 'poison':
            json.loads(DEEP_JSON)
        done.append(name)

    queue = RetryQueue(DeadLetters(redis_url), 'test', Backoff(0.05, 0.1))
    for name in ('first', 'poison', 'second'):
        queue.put(name, functools.partial(hand_on, name), item=name)
    assert len(queue) == 3 and done == []
    broker_up = True
    wait_for(lambda: queue.flush() or not queue, 5)
    assert done == ['first', 'second']
    [letter] = dead_letters.read(redis_url)
    assert letter['where'] == {'item': 'poison'}
    assert letter['reason'].startswith('a message that raised '
                                       'RecursionError')


# --- the Redis alert stream -------------------------------------------------

def test_stream_listener_dead_letters_hostile_entries_and_goes_on(
        handled, redis_url):
    stream = alert_stream.AlertStream(redis.Redis.from_url(redis_url))
    stream.append_many([('cbc_gstlal', DEEP_JSON), ('cbc_gstlal', NOT_UTF8),
                        ('cbc_gstlal', b'[1, 2]'),
                        ('cbc_gstlal', b'{"uid": "G1", "alert_type": "new",'
                         b' "object": {"links": ["not", "a", "dict"]}}')])
    stream.client.xadd(stream.key, {'node': 'cbc_gstlal'})  # no message
    stream.append_many([('cbc_gstlal', ALERT)])
    task, thread = run_in_thread(alert_stream.listen, app.conf,
                                 ['cbc_gstlal'], strict)
    try:
        wait_for(lambda: len(handled) == 1, 20, message='the valid alert')
        reasons = [letter['reason'] for letter in letters_of(redis_url)]
        on = 'a message on cbc_gstlal'
        assert [reason.split(' (')[0] for reason in reasons] == [
            on + ' that is not JSON', on + ' that is not JSON',
            on + ': a JSON list, not an object', on + ': malformed',
            'a stream entry without a message field']
        assert 'RecursionError' in reasons[0]
        assert 'UnicodeDecodeError' in reasons[1]
        # Still alive: the next alert is handled too.
        stream.append_many([('cbc_gstlal', ALERT)])
        wait_for(lambda: len(handled) == 2, 20, message='the next alert')
        assert thread.is_alive()
    finally:
        stop(task, thread)
        stream.client.close()
    deep = letters_of(redis_url)[0]
    assert deep['transport'] == 'LVAlert'
    assert set(deep['where']) == {'node', 'stream_entry'}
    assert deep['payload']['length'] == len(DEEP_JSON)
    assert deep['payload']['truncated']


@pytest.fixture
def broker(broker_app, tmp_path, monkeypatch):
    """A second, persistent Redis as the Celery broker (the result backend
    stays in the test Redis); stopped at first: ``start()`` it."""
    server = RedisServer(data_dir=str(tmp_path / 'broker'), persistent=True)
    monkeypatch.setitem(app.conf, 'broker_url', server.url)
    monkeypatch.setenv('CELERY_BROKER_URL', server.url)
    monkeypatch.setitem(app.conf, 'task_always_eager', False)
    drop_connections(app)
    yield server
    drop_connections(app)
    server.stop()


def queued_tasks(url):
    """Names and arguments of the task messages in the broker's queue."""
    client = redis.Redis.from_url(url)
    try:
        messages = [json.loads(m) for m in client.lrange('celery', 0, -1)]
    finally:
        client.close()
    # The body: [args, kwargs, embed] in kombu's JSON (which has bytes);
    # the handlers take one argument.
    return [(m['headers']['task'],
             kombu.utils.json.loads(base64.b64decode(m['body']))[0][0])
            for m in messages]


@pytest.mark.integration
def test_stream_entries_wait_while_the_broker_is_down(
        handled, broker, redis_url, caplog):
    stream = alert_stream.AlertStream(redis.Redis.from_url(redis_url))
    stream.append_many([('cbc_gstlal', ALERT)])
    with caplog.at_level(logging.WARNING):
        task, thread = run_in_thread(alert_stream.listen, app.conf,
                                     ['cbc_gstlal'], strict)
        try:
            wait_for(lambda: caplog.text.count('Connection refused') >= 2,
                     30, message='two failed attempts')
            broker.start()
            wait_for(lambda: queued_tasks(broker.url), 30,
                     message='the alert handed on')
        finally:
            stop(task, thread)
            stream.client.close()
    [(name, alert)] = queued_tasks(broker.url)
    assert name == record_message.name
    assert alert == json.loads(ALERT)
    assert 'dead-lettered' not in caplog.text
    assert dead_letters.count(broker.url) == 0


# --- the GCN VOEvent connection ----------------------------------------------

def listen_vtp(sock):
    """gcn._receive on `sock` in a thread, with the dead letters and
    retry queue of gcn.listen; return (task, thread, queue)."""
    queue = RetryQueue(DeadLetters.from_conf(app.conf), gcn_tasks.TRANSPORT,
                       Backoff(0.1, 0.5))
    task, thread = run_in_thread(gcn_tasks._receive, sock, Backoff(1, 1),
                                 queue)
    return task, thread, queue


def test_vtp_listener_dead_letters_hostile_packets_and_goes_on(
        handled, redis_url):
    bad_type = VOEVENT.replace(b'value="115"', b'value="G"')
    deep_xml = b'<a>' * 100000 + b'</a>' * 100000
    left, right = socket.socketpair()
    task, thread, _ = listen_vtp(left)
    try:
        for payload in (deep_xml, NOT_UTF8, DEEP_JSON.encode(), bad_type,
                        VOEVENT):
            vtp.send_packet(right, payload)
        reader = vtp.PacketReader(right, 2**20)
        acks = [wait_for(lambda: reader.read(0.1), 20) for _ in range(2)]
        assert [vtp.parse(ack).get('role') for ack in acks] == ['ack'] * 2
        assert handled == [VOEVENT]
        assert thread.is_alive()
    finally:
        stop(task, thread)
        left.close()
        right.close()
    reasons = [letter['reason'] for letter in letters_of(redis_url)]
    assert [reason.split(' (')[0] for reason in reasons] == [
        'a packet that is not XML'] * 3 + [
        "a VOEvent whose Packet_Type value 'G' is not an integer"]
    assert 'Excessive depth' in reasons[0]
    assert letters_of(redis_url)[3]['where']['ivorn'].startswith(
        'ivo://nasa.gsfc.gcn/Fermi')


@pytest.mark.integration
def test_vtp_voevents_wait_in_memory_while_the_broker_is_down(
        handled, broker, redis_url, caplog):
    left, right = socket.socketpair()
    with caplog.at_level(logging.WARNING):
        task, thread, queue = listen_vtp(left)
        try:
            vtp.send_packet(right, VOEVENT)
            reader = vtp.PacketReader(right, 2**20)
            assert vtp.parse(wait_for(lambda: reader.read(0.1), 20)).get(
                'role') == 'ack'
            wait_for(lambda: 'trying again' in caplog.text, 20)
            assert len(queue) == 1
            broker.start()
            wait_for(lambda: queued_tasks(broker.url), 30,
                     message='the VOEvent handed on')
        finally:
            stop(task, thread)
            left.close()
            right.close()
    [(name, payload)] = queued_tasks(broker.url)
    assert name == record_message.name
    assert payload == VOEVENT
    assert 'dead-lettered' not in caplog.text
    assert not queue


# --- XMPP --------------------------------------------------------------------

@pytest.mark.integration
def test_xmpp_listener_dead_letters_hostile_items_and_goes_on(
        handled, xmpp_server, redis_url, monkeypatch, caplog):
    for key, value in xmpp_server.settings.items():
        monkeypatch.setitem(app.conf, key, value)
    xmpp_server.create_nodes('cbc_gstlal')
    with caplog.at_level(logging.INFO):
        task, thread = run_in_thread(lvalert_xmpp.listen, app.conf,
                                     ['cbc_gstlal'], strict)
        try:
            wait_for(lambda: 'subscribed to node cbc_gstlal' in caplog.text,
                     30, message='the subscription')
            for text in (DEEP_JSON, '[1, 2]', '{"uid": ', ALERT):
                xmpp_server.publish('cbc_gstlal', text)
            wait_for(lambda: handled, 30, message='the valid alert')
            assert handled == [json.loads(ALERT)]
            assert thread.is_alive()
        finally:
            stop(task, thread)
    letters = letters_of(redis_url)
    assert [letter['reason'].split(' (')[0] for letter in letters] == [
        'a message on cbc_gstlal that is not JSON',
        'a message on cbc_gstlal: a JSON list, not an object',
        'a message on cbc_gstlal that is not JSON']
    assert 'RecursionError' in letters[0]['reason']
    assert letters[0]['where']['node'] == 'cbc_gstlal'
    assert letters[0]['where']['xmpp_item']
    assert letters[0]['payload']['length'] == len(DEEP_JSON)
