"""gcn.listen in a real worker, started by a real Beat, fed by real peers:
pygcn's VOEvent server (with a SIGKILL of the listener in between), then a
raw VTP server that sends garbage."""

import glob
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import redis

from gwcelery.util import voevent_transport as vtp

from .conftest import DATA_DIR
from .listener_support import (
    WORKER_ARGS,
    active_eternal,
    listener_settings,
    redis_list,
    running,
    wait_for,
)
from .listener_tasks import GCN_KEY

pytestmark = pytest.mark.integration

SAMPLES = sorted(glob.glob(os.path.join(DATA_DIR, 'gcn', '*.xml')))


def received(redis_url):
    return redis_list(redis_url, GCN_KEY)


def clear_received(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(GCN_KEY)
    finally:
        client.close()


def pygcn_server(port, paths):
    """pygcn's own VOEvent server, sending `paths` over and over."""
    return subprocess.Popen(
        [sys.executable, '-c',
         'import sys, gcn; gcn.serve(sys.argv[2:], port=int(sys.argv[1]),'
         ' retransmit_timeout=0.05)', str(port), *paths],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class GarbageServer(threading.Thread):
    """Accept one connection; send `packets` (raw bytes, framed by the
    caller), collect the replies until the listener goes quiet, close."""

    def __init__(self, port, packets):
        super().__init__(daemon=True)
        self.server = socket.create_server(('127.0.0.1', port))
        self.packets = packets
        self.replies = []
        self.done = threading.Event()

    def run(self):
        conn, _ = self.server.accept()
        with conn:
            reader = vtp.PacketReader(conn, 2**20)
            for packet in self.packets:
                conn.sendall(packet)
            while True:
                reply = reader.read(3.0)
                if reply is None:
                    break
                self.replies.append(vtp.parse(reply))
        self.server.close()
        self.done.set()


def frame(payload):
    return struct.pack('!I', len(payload)) + payload


def test_listen_gets_every_pygcn_sample_survives_sigkill_and_garbage(
        start_worker, start_beat, worker_settings, redis_url):
    settings = listener_settings(worker_settings)
    port = settings['gcn_remote_port']
    server = pygcn_server(port, SAMPLES)
    try:
        worker = start_worker('celery', 'celery', *WORKER_ARGS)
        start_beat()
        first = running('gwcelery.tasks.gcn.listen')
        expected = {open(path, 'rb').read() for path in SAMPLES}
        wait_for(lambda: expected <= set(received(redis_url)), 60,
                 message='every sample notice')
        # Every payload the handler got is byte-for-byte a sample.
        assert set(received(redis_url)) <= expected

        # SIGKILL the pool process running the listener: Beat starts a
        # new copy, which handles the next notice.
        os.kill(first['worker_pid'], signal.SIGKILL)
        killed = time.monotonic()
        second = wait_for(
            lambda: [task for task in active_eternal(
                ('gwcelery.tasks.gcn.listen',)) if task['id'] != first['id']],
            30, interval=0.05, message='a new gcn.listen')[0]
        restarted = time.monotonic() - killed
        handled = len(received(redis_url))
        wait_for(lambda: len(received(redis_url)) > handled, 30,
                 interval=0.05, message='a notice after the restart')
        print(f'\ngcn.listen back {restarted:.1f} s after SIGKILL; next '
              f'notice handled {time.monotonic() - killed:.1f} s after it')
        assert second['worker_pid'] != first['worker_pid']
        assert restarted < 10
        assert set(received(redis_url)) <= expected
    finally:
        server.terminate()
        server.wait()

    # pygcn's server is gone; a server that sends garbage takes its port
    # and the listener reconnects to it.
    good = open(SAMPLES[0], 'rb').read()
    unknown_type = good.replace(b'value="115"', b'value="9999"')
    no_type = good.replace(b'name="Packet_Type"', b'name="Packet_Tipe"')
    garbage = [
        frame(good[:len(good) // 2]),               # truncated XML
        frame(bytes(range(256)) * 4),               # binary
        frame(os.urandom(2**20)),                   # 1 MB of junk
        frame(b'<?xml version="1.0"?><root/>'),     # XML, not a VOEvent
        frame(unknown_type),                        # unknown notice type
        frame(no_type),                             # no notice type
        frame(vtp.transport_message('iamalive', 'ivo://test/server')),
        frame(good),                                # and a good one
    ]
    time.sleep(1)  # let the last handlers of pygcn's notices finish
    clear_received(redis_url)
    peer = GarbageServer(port, garbage)
    peer.start()

    # Only the good notice after the garbage reached the handler, intact.
    wait_for(lambda: received(redis_url), 60, message='the good notice')
    assert peer.done.wait(30)
    assert received(redis_url) == [good]
    roles = [root.get('role') for root in peer.replies]
    # An ack for each VOEvent with an ivorn (the unknown and the untyped
    # ones are acknowledged but not handled) and an iamalive answer.
    assert roles.count('ack') == 3
    assert roles.count('iamalive') == 1
    log = worker.log()
    assert log.count('skipping a packet that is not XML') == 3
    assert 'skipping an XML document with root <root>' in log
    assert 'no What/Param named Packet_Type' in log
