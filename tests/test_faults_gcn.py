"""Fault injection on the GCN listener (short version of
``bench/faults_gcn.py``): the real :func:`gwcelery.tasks.gcn.listen` in a
real worker started by a real Beat, connected to a VOEvent Transport server
that sends hostile packets between valid notices. Checks that the listener
survives every packet, that each valid notice reaches the recording
handler exactly once, and that the listener's memory stays bounded."""

import os
import re
import socket
import struct
import threading
import time

import pytest

from gwcelery.util import voevent_transport as vtp

from .conftest import DATA_DIR
from .listener_support import (
    WORKER_ARGS,
    listener_settings,
    redis_list,
    running,
    wait_for,
)
from .listener_tasks import GCN_KEY

pytestmark = pytest.mark.integration

#: A Fermi GBM final position notice (a type the recording handler takes).
SAMPLE = open(os.path.join(DATA_DIR, 'gcn', 'fermi_grb_gcn.xml'),
              'rb').read()
_IVORN = re.compile(rb'ivorn="[^"]*"')


def notice(number):
    """A valid, handled notice with its own IVORN."""
    return _IVORN.sub(f'ivorn="ivo://test/faults#{number}"'.encode(),
                      SAMPLE, count=1)


def ivorn_of(payload):
    """The IVORN of a :func:`notice`."""
    return _IVORN.search(payload).group()[7:-1].decode()


_LAUGHS = b''.join(
    b'<!ENTITY l%d "%s">' % (level, b'&l%d;' % (level - 1) * 10)
    for level in range(1, 10))

#: Hostile packets by kind. None is a notice that the handler must get.
HOSTILE = {
    'truncated': SAMPLE[:len(SAMPLE) // 2],
    'binary': bytes(range(256)) * 4,
    'empty': b'',
    'wrong-namespace': SAMPLE.replace(b'VOEvent/v2.0', b'VOEvent/v9.9'),
    'billion-laughs': b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY l0 '
                      b'"lol">' + _LAUGHS + b']><lolz>&l9;</lolz>',
    'laughs-in-voevent': SAMPLE.replace(
        b'<?xml version = \'1.0\' encoding = \'UTF-8\'?>',
        b'<?xml version="1.0"?><!DOCTYPE voe:VOEvent [<!ENTITY l0 "lol">'
        + _LAUGHS + b']>').replace(b'value="115"', b'value="9999"').replace(
        b'<Description>', b'<Description>&l9;'),
    'external-entity': b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x '
                       b'SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    'unknown-type': SAMPLE.replace(b'value="115"', b'value="9999"'),
    'no-param': re.sub(rb'<What>.*</What>', b'<What/>', SAMPLE,
                       flags=re.S),
    'no-ivorn': _IVORN.sub(b'', SAMPLE, count=1),
    'not-voevent': b'<?xml version="1.0"?><html><body/></html>',
    'nak': vtp.transport_message('nak', 'ivo://test/server'),
    'one-megabyte': os.urandom(2**20),
}


def frame(payload):
    return struct.pack('!I', len(payload)) + payload


class HostileServer(threading.Thread):
    """A VOEvent Transport server: sends ``plan`` (payloads; those in
    ``valid`` are notices) and waits for the ack of each valid notice
    before going on. If the listener reconnects, the plan resumes at the
    first notice not acknowledged (as GCN resends), so a listener that
    died shows as more than one connection."""

    def __init__(self, port, plan, valid, ack_timeout=60):
        super().__init__(daemon=True)
        self.server = socket.create_server(('127.0.0.1', port))
        self.server.settimeout(1)
        self.plan = plan
        self.valid = valid
        self.ack_timeout = ack_timeout
        self.acked = set()
        self.connections = 0
        self.position = 0
        self.stopping = threading.Event()
        self.finished = threading.Event()

    def run(self):
        with self.server:
            while not self.stopping.is_set() and not self.finished.is_set():
                try:
                    conn, _ = self.server.accept()
                except TimeoutError:
                    continue
                self.connections += 1
                try:
                    with conn:
                        self._serve(conn)
                except (OSError, vtp.ProtocolError):
                    continue

    def _serve(self, conn):
        reader = vtp.PacketReader(conn, 2**21)
        while self.position < len(self.plan):
            payload = self.plan[self.position]
            conn.sendall(frame(payload))
            if payload in self.valid:
                self._await_ack(reader, ivorn_of(payload))
            self.position += 1
        self.finished.set()

    def _await_ack(self, reader, ivorn):
        deadline = time.monotonic() + self.ack_timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            reply = reader.read(0.5)
            if reply is None:
                continue
            root = vtp.parse(reply)
            if root.get('role') == 'ack' and vtp.origin(root) == ivorn:
                self.acked.add(ivorn)
                return
        raise TimeoutError(f'no ack for {ivorn}')

    def stop(self):
        self.stopping.set()
        self.join(10)


def peak_memory_kib(pid):
    """The peak resident memory (VmHWM, KiB) of a process."""
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise LookupError('no VmHWM')


def plan(valid_count, hostile_per_gap, first=0):
    """``hostile_per_gap`` hostile packets (cycling through the kinds,
    the 1 MB one once per ten gaps) before each of ``valid_count``
    notices. Returns the plan and the notices."""
    small = [payload for kind, payload in HOSTILE.items()
             if kind != 'one-megabyte']
    packets, notices = [], []
    for number in range(first, first + valid_count):
        batch = [small[(number * hostile_per_gap + i) % len(small)]
                 for i in range(hostile_per_gap)]
        if number % 10 == 0:
            batch[0] = HOSTILE['one-megabyte']
        notices.append(notice(number))
        packets += [*batch, notices[-1]]
    return packets, notices


def test_hostile_packets_between_notices(
        start_worker, start_beat, worker_settings, redis_url):
    port = listener_settings(worker_settings)['gcn_remote_port']
    packets, notices = plan(20, len(HOSTILE))
    server = HostileServer(port, packets, set(notices))
    server.start()
    try:
        worker = start_worker('celery', 'celery', *WORKER_ARGS)
        start_beat()
        first = running('gwcelery.tasks.gcn.listen', timeout=90)
        assert server.finished.wait(120), 'the server did not finish'
        wait_for(lambda: len(redis_list(redis_url, GCN_KEY)) >= len(notices),
                 60, message='every notice handled')
        time.sleep(1)  # a duplicate would arrive now
        received = redis_list(redis_url, GCN_KEY)
        assert sorted(received) == sorted(notices)
        assert server.connections == 1
        assert running('gwcelery.tasks.gcn.listen')['id'] == first['id']
        # Entity expansion would take 3 GB (10**9 "lol"); a 1 MB packet
        # is kept once at a time.
        assert peak_memory_kib(first['worker_pid']) < 512 * 1024
        log = worker.log()
        assert 'skipping a packet that is not XML' in log
        assert 'no What/Param named Packet_Type' in log
        assert 'skipping a VOEvent without an ivorn' in log
        # libxml2 refuses the expansion: the parse fails, quickly.
        assert 'entity amplification factor exceeded' in log
        assert 'skipping an XML document with root <html>' in log
    finally:
        server.stop()
