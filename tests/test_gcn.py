"""GCN packets, dispatch, VTP framing and the VOEvent queue, in-process."""

import glob
import logging
import os
import socket
import struct
import time

import gcn.voeventclient
import lxml.etree
import pytest

from gwcelery import app
from gwcelery.tasks import gcn as gcn_tasks
from gwcelery.util import voevent_transport as vtp
from gwcelery.util.dispatch import DispatchTable
from gwcelery.util.voevent_broker import VOEventQueue, allowed_addresses

from .conftest import DATA_DIR

SAMPLES = sorted(glob.glob(os.path.join(DATA_DIR, 'gcn', '*.xml')))
CLIENT_IVORN = 'ivo://test/client'


def read(path):
    with open(path, 'rb') as f:
        return f.read()


RECEIVED = []


@app.task(shared=False)
def record_payload(payload):
    """Handler of the tests: remember the payload."""
    RECEIVED.append(payload)


@pytest.fixture
def handled(monkeypatch):
    """Eager mode and a private handler table in which
    :func:`record_payload` handles the notice types of the samples; returns
    the list of the payloads it got."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    table = DispatchTable(normalize=gcn_tasks.NoticeType)
    monkeypatch.setattr(gcn_tasks, '_handlers', table)
    table.register(record_payload, *{
        gcn_tasks.notice_type(vtp.parse(read(path))) for path in SAMPLES})
    RECEIVED.clear()
    return RECEIVED


@pytest.mark.parametrize('path', SAMPLES, ids=os.path.basename)
def test_each_sample_is_acknowledged_and_reaches_its_handler(path, handled):
    payload = read(path)
    reply = vtp.parse(gcn_tasks.process_packet(payload, CLIENT_IVORN))
    assert handled == [payload]
    assert isinstance(handled[0], bytes)
    assert reply.get('role') == 'ack'
    assert reply.tag in gcn.voeventclient._valid_vtp_root_tags
    assert reply.findtext('Origin') == vtp.parse(payload).get('ivorn')
    assert reply.findtext('Response') == CLIENT_IVORN


def test_iamalive_is_answered(handled):
    ping = vtp.transport_message('iamalive', 'ivo://gcn/server')
    reply = vtp.parse(gcn_tasks.process_packet(ping, CLIENT_IVORN))
    assert reply.get('role') == 'iamalive'
    assert reply.findtext('Origin') == 'ivo://gcn/server'
    assert reply.findtext('Response') == CLIENT_IVORN
    assert handled == []


GOOD = read(os.path.join(DATA_DIR, 'gcn', 'fermi_grb_gcn.xml'))


@pytest.mark.parametrize('payload,reason,acked', [
    (GOOD[:2000], 'not XML', False),
    (bytes(range(256)), 'not XML', False),
    (b'\x00' * 2**20, 'not XML', False),
    (b'<root><child/></root>', 'root <root>', False),
    (GOOD.replace(b'ivorn=', b'ivorx='), 'without an ivorn', False),
    (GOOD.replace(b'name="Packet_Type"', b'name="Other"'),
     'no What/Param named Packet_Type', True),
    (GOOD.replace(b'value="115"', b'value="G"'), "'G' is not an integer",
     True),
], ids=['truncated', 'binary', 'junk', 'other-xml', 'no-ivorn',
        'no-type', 'bad-type'])
def test_bad_packets_are_logged_and_skipped(payload, reason, acked, handled,
                                            caplog):
    with caplog.at_level(logging.WARNING):
        reply = gcn_tasks.process_packet(payload, CLIENT_IVORN)
    assert handled == []
    assert (reply is not None) == acked
    assert reason in caplog.text


def test_unknown_and_unhandled_types_are_logged_at_debug(handled, caplog):
    unknown = GOOD.replace(b'value="115"', b'value="9999"')
    unhandled = GOOD.replace(b'value="115"', b'value="150"')  # LVC_PRELIM.
    with caplog.at_level(logging.DEBUG, logger='gwcelery.tasks.gcn'):
        for payload in (unknown, unhandled):
            assert gcn_tasks.process_packet(payload, CLIENT_IVORN)
    assert handled == []
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.DEBUG, 'GCN: VOEvent ivo://nasa.gsfc.gcn/Fermi#'
            'GBM_Fin_Pos2018-05-24T09:58:26.31_548848711_0-566 has unknown '
            'notice type 9999; ignored') in messages
    assert any(level == logging.DEBUG and 'no handler for LVC_PRELIMINARY'
               in message for level, message in messages)


def test_handler_takes_notice_types_or_their_numbers(monkeypatch):
    table = DispatchTable(normalize=gcn_tasks.NoticeType)
    monkeypatch.setattr(gcn_tasks, '_handlers', table)

    @gcn_tasks.handler(112, gcn_tasks.NoticeType.FERMI_GBM_FIN_POS,
                       shared=False, name='tests.test_gcn.fermi')
    def fermi(payload):
        pass

    assert set(gcn_tasks.notice_types_handled()) == {
        gcn_tasks.NoticeType.FERMI_GBM_GND_POS,
        gcn_tasks.NoticeType.FERMI_GBM_FIN_POS}
    assert table.tasks(115) == [fermi]
    with pytest.raises(ValueError):
        gcn_tasks.handler(9999)


# --- framing ----------------------------------------------------------------

def test_packet_reader_keeps_partial_packets_across_timeouts():
    left, right = socket.socketpair()
    with left, right:
        reader = vtp.PacketReader(left, 100)
        packet = struct.pack('!I', 5) + b'hello' + struct.pack('!I', 3)
        right.sendall(packet[:3])
        assert reader.read(0.05) is None
        right.sendall(packet[3:] + b'ab')
        assert reader.read(0.05) == b'hello'
        assert reader.read(0.05) is None
        right.sendall(b'c' + struct.pack('!I', 0))
        assert reader.read(0.05) == b'abc'
        assert reader.read(0.05) == b''
        right.sendall(struct.pack('!I', 101))
        with pytest.raises(vtp.ProtocolError):
            reader.read(0.05)


def test_packet_reader_reports_a_closed_connection():
    left, right = socket.socketpair()
    with left:
        right.close()
        with pytest.raises(ConnectionError):
            vtp.PacketReader(left, 100).read(0.05)


# --- sending and the queue ------------------------------------------------

def voevent(number):
    return GOOD.replace(b'0-566"', b'0-%d"' % number)


def test_send_queues_voevents_in_order(broker_app):
    ids = [gcn_tasks.send(voevent(number)) for number in range(3)]
    ids.append(gcn_tasks.send(voevent(3).decode()))  # str is accepted too
    queue = VOEventQueue(app.conf)
    assert queue.entries() == [(entry_id, voevent(number))
                               for number, entry_id in enumerate(ids)]
    queue.close()


def test_send_queues_an_ivorn_once(broker_app):
    """A redelivered send (same VOEvent) returns the first entry."""
    first = gcn_tasks.send(voevent(7))
    assert gcn_tasks.send(voevent(7)) == first
    queue = VOEventQueue(app.conf)
    assert queue.entries() == [(first, voevent(7))]
    queue.close()
    assert gcn_tasks.send.acks_late and gcn_tasks.send.reject_on_worker_lost


@pytest.mark.parametrize('payload', [
    b'not xml', GOOD[:100], b'<root/>',
    vtp.transport_message('iamalive', 'x'),
    GOOD.replace(b'ivorn=', b'ivorx=')])
def test_send_refuses_what_is_not_a_voevent(payload, broker_app):
    with pytest.raises(ValueError, match='not a VOEvent'):
        gcn_tasks.send(payload)
    queue = VOEventQueue(app.conf)
    assert queue.entries() == []
    queue.close()


def test_queue_cursors_per_address(broker_app, monkeypatch):
    monkeypatch.setitem(app.conf, 'gcn_broker_queue_max_age', 3600.0)
    queue = VOEventQueue(app.conf)
    first, second, third = (queue.append(voevent(n)) for n in range(3))

    # An address never seen starts at the oldest entry young enough.
    start = queue.cursor('10.0.0.1')
    assert queue.next_after(start, 0.01) == (first, voevent(0))
    assert queue.next_after(first, 0.01) == (second, voevent(1))
    assert queue.next_after(third, 0.01) is None

    # Each address has its own cursor, which never moves backwards.
    queue.acknowledge('10.0.0.1', second)
    queue.acknowledge('10.0.0.1', first)
    assert queue.cursor('10.0.0.1') == second
    assert queue.next_after(queue.cursor('10.0.0.2'), 0.01)[0] == first

    # Entries older than the age limit are not sent to a new address.
    monkeypatch.setitem(app.conf, 'gcn_broker_queue_max_age', 0.5)
    old = VOEventQueue(app.conf)
    time.sleep(0.6)
    fresh = old.append(voevent(4))
    assert old.next_after(old.cursor('10.0.0.3'), 0.01)[0] == fresh
    queue.close()
    old.close()


def test_allowed_addresses_resolve_names(caplog):
    assert '127.0.0.1' in allowed_addresses(['localhost'])
    assert allowed_addresses(['127.0.0.2']) == {'127.0.0.2'}
    with caplog.at_level(logging.WARNING):
        assert allowed_addresses(['no-such-host.invalid']) == set()
    assert 'cannot resolve allowed host no-such-host.invalid' in caplog.text


def test_transport_messages_are_what_pygcn_expects():
    message = vtp.transport_message('iamalive', 'ivo://a', 'ivo://b')
    root = lxml.etree.fromstring(message)
    assert root.tag in gcn.voeventclient._valid_vtp_root_tags
    assert vtp.kind(root) == 'iamalive'
    assert vtp.origin(root) == 'ivo://a'
