"""GraceDB outages while GRB notices arrive (short versions of
``bench/faults_gracedb.py``): real Fermi notices go to
:func:`gwcelery.tasks.external_triggers.handle` on a real exttrig worker,
which talks over HTTP to the local GraceDB server through a small TCP
proxy. Faults: the server stopped and restarted on the same port and data
directory; the proxy answering 503, resetting connections and holding
answers past the client time-out. Every notice must become exactly one
External event."""

import itertools
import os
import socket
import struct
import threading
import time

import pytest

from gwcelery.gracedb_server import GraceDbServer
from gwcelery.tasks import external_triggers

from .conftest import DATA_DIR
from .listener_support import free_port, wait_for

pytestmark = pytest.mark.integration

#: The trigger number of the Fermi sample, replaced to make new triggers.
SAMPLE_TRIGGER = b'548848711'

#: Retry settings short enough for recovery within seconds of a fault.
FAST_RETRY = {'gracedb_timeout': 2, 'gracedb_retry_backoff': 1,
              'gracedb_retry_backoff_max': 4, 'gracedb_max_retries': 100}

_503 = (b'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n'
        b'Content-Length: 11\r\nConnection: close\r\n\r\nunavailable')


def notice(trigger):
    """A Fermi GBM final-position notice of trigger number ``trigger``
    (trigger id and IVORN rewritten)."""
    with open(os.path.join(DATA_DIR, 'gcn', 'fermi_grb_gcn.xml'), 'rb') as f:
        return f.read().replace(SAMPLE_TRIGGER, str(trigger).encode())


def trigger_counts(url):
    """``{trigger id: number of External events}`` in GraceDB at ``url``
    (``None`` if the server cannot be reached)."""
    from gracedb_sdk import Client
    try:
        with Client(url) as client:
            events = list(client.events.search(query='group: External'))
    except OSError:
        return None
    counts = {}
    for event in events:
        trigger = event['extra_attributes']['GRB']['trigger_id']
        counts[trigger] = counts.get(trigger, 0) + 1
    return counts


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_port``.

    Passes everything through until :meth:`burst`: then each new
    connection in turn is answered 503, reset, or forwarded with its
    answer held back ``hold`` seconds and dropped (the request was
    served, the client timed out)."""

    def __init__(self, upstream_port, hold):
        self.upstream_port = upstream_port
        self.hold = hold
        self.faulty = False
        self.modes = itertools.cycle(('503', 'reset', 'hold'))
        self.open = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.url = f'http://127.0.0.1:{self.port}/api/'
        threading.Thread(target=self._accept, daemon=True).start()

    def burst(self, seconds):
        """Be faulty for ``seconds``; kept-alive connections are reset at
        the start so that every request meets the fault."""
        with self.lock:
            self.faulty = True
            for sock in list(self.open):
                _reset(sock)
        time.sleep(seconds)
        self.faulty = False

    def close(self):
        """Stop accepting; drop every connection."""
        self.listener.close()
        with self.lock:
            for sock in list(self.open):
                _reset(sock)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                mode = next(self.modes) if self.faulty else 'pass'
                self.open.add(client)
            threading.Thread(target=self._serve, args=(client, mode),
                             daemon=True).start()

    def _serve(self, client, mode):
        try:
            if mode == '503':
                client.recv(65536)
                client.sendall(_503)
            elif mode == 'reset':
                client.recv(65536)
                _reset(client)
            else:
                self._forward(client, hold=self.hold if mode == 'hold'
                              else 0)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open.discard(client)
            client.close()

    def _forward(self, client, hold):
        upstream = socket.create_connection(('127.0.0.1', self.upstream_port))
        try:
            threading.Thread(target=_pump, args=(client, upstream),
                             daemon=True).start()
            if hold:
                # The server gets the request and acts on it; its answer
                # comes after the client gave up.
                time.sleep(hold)
                return
            _pump(upstream, client)
        finally:
            upstream.close()


def _pump(source, target):
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _reset(sock):
    """Close ``sock`` with a TCP reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack('ii', 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def send_during(triggers, interval, fault):
    """Send a notice of each trigger every ``interval`` s, running
    ``fault()`` in a thread from the fourth one; return when the fault
    ended (monotonic time)."""
    thread = None
    for index, trigger in enumerate(triggers):
        if index == 3:
            thread = threading.Thread(target=fault)
            thread.start()
        external_triggers.handle.delay(notice(trigger))
        time.sleep(interval)
    thread.join()
    return time.monotonic()


@pytest.fixture
def exttrig_stack(tmp_path, start_worker, worker_settings):
    """The local GraceDB server on a fixed port (``stack['server']``,
    restartable), a :class:`Proxy` in front of it and an exttrig worker
    using GraceDB through the proxy with short retries."""
    port = free_port()
    data_dir = str(tmp_path / 'gracedb')
    stack = {'server': GraceDbServer(data_dir, port=port).start(),
             'data_dir': data_dir, 'port': port}
    proxy = Proxy(port, hold=FAST_RETRY['gracedb_timeout'] + 1)
    stack['proxy'] = proxy
    worker_settings.update(FAST_RETRY, gracedb_url=proxy.url,
                           gracedb_host=f'127.0.0.1:{proxy.port}')
    try:
        stack['worker'] = start_worker('exttrig', 'exttrig',
                                       '--concurrency', '1')
        yield stack
    finally:
        proxy.close()
        stack['server'].stop()


def assert_each_once(stack, triggers, ended):
    """Every trigger gets exactly one event; recovery within 30 s."""
    url = stack['server'].url
    expected = {str(trigger) for trigger in triggers}
    wait_for(lambda: expected <= set(trigger_counts(url) or ()), 60,
             message='an event for every notice')
    assert time.monotonic() - ended < 30
    time.sleep(2)  # a late duplicate would show up now
    counts = trigger_counts(url)
    assert {t: counts[t] for t in expected} == {t: 1 for t in expected}


def test_gracedb_stopped_and_restarted(exttrig_stack):
    stack = exttrig_stack

    def outage():
        stack['server'].stop()
        time.sleep(8)
        stack['server'] = GraceDbServer(stack['data_dir'],
                                        port=stack['port']).start()

    triggers = range(700000000, 700000012)
    ended = send_during(triggers, 0.5, outage)
    assert_each_once(stack, triggers, ended)
    assert 'Retry in' in stack['worker'].log()


def test_proxy_503_reset_and_late_answers(exttrig_stack):
    stack = exttrig_stack
    triggers = range(710000000, 710000012)
    ended = send_during(triggers, 0.5, lambda: stack['proxy'].burst(6))
    assert_each_once(stack, triggers, ended)
    assert 'Retry in' in stack['worker'].log()
