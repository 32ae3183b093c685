"""gcn.broker in a real worker, started by a real Beat, with pygcn's own
client as GCN's receiver."""

import os
import socket
import time

import pytest

from gwcelery.tasks import gcn

from .conftest import DATA_DIR
from .listener_support import (
    WORKER_ARGS,
    listener_settings,
    pygcn_received,
    running,
    start_pygcn_client,
    wait_for,
)

pytestmark = pytest.mark.integration

def voevent(number):
    """A distinct VOEvent: a sample notice with its own IVORN."""
    with open(os.path.join(DATA_DIR, 'gcn', 'snews_gcn.xml'), 'rb') as f:
        payload = f.read()
    return payload.replace(b'Event2018-09-18T16:00:01.00_1000194-580',
                           b'Test-%d' % number)


def refused(port, source):
    """Whether the broker closes a connection from `source` at once,
    without sending anything."""
    with socket.create_connection(('127.0.0.1', port), timeout=10,
                                  source_address=(source, 0)) as sock:
        return sock.recv(1) == b''


def test_broker_sends_everything_in_order_to_pygcn_only_to_allowed_hosts(
        start_worker, start_beat, worker_settings, redis_url, tmp_path):
    settings = listener_settings(worker_settings,
                                 gcn_broker_iamalive_interval=1.0,
                                 gcn_broker_reply_timeout=10.0)
    port = settings['gcn_bind_port']
    worker = start_worker('celery', 'celery', *WORKER_ARGS)
    start_beat()
    broker_task = running('gwcelery.tasks.gcn.broker')
    wait_for(lambda: 'GCN broker: listening' in worker.log(), 30,
             message='the broker to listen')

    payloads = [voevent(number) for number in range(7)]
    # Queued while no client is connected.
    for payload in payloads[:3]:
        gcn.send.delay(payload).get(timeout=30)

    client_log = tmp_path / 'pygcn-client.log'
    client = start_pygcn_client(port, redis_url, client_log)
    try:
        wait_for(lambda: len(pygcn_received(redis_url)) >= 3, 30,
                 message='the queued VOEvents')
        # Queued while the client is connected.
        for payload in payloads[3:6]:
            gcn.send.delay(payload).get(timeout=30)
        wait_for(lambda: len(pygcn_received(redis_url)) >= 6, 30,
                 message='the new VOEvents')
        assert pygcn_received(redis_url) == payloads[:6]

        # Keep-alive: the broker's iamalive, answered by pygcn.
        wait_for(lambda: 'sent iamalive response' in client_log.read_text(),
                 30, message='an iamalive exchange')

        # A host that is not allowed is turned away; 127.0.0.2 is on lo.
        assert refused(port, '127.0.0.2')
        assert 'refused connection from 127.0.0.2' in worker.log()

        # Kill the broker; queue a VOEvent while Beat restarts it: the
        # client reconnects and gets it, and nothing twice.
        gcn.broker.app.control.revoke(broker_task['id'], terminate=True,
                                      signal='SIGKILL')
        gcn.send.delay(payloads[6]).get(timeout=30)
        start = time.monotonic()
        restarted = wait_for(
            lambda: [task for task in [running('gwcelery.tasks.gcn.broker')]
                     if task['id'] != broker_task['id']], 30,
            message='a new broker')
        print(f'broker restarted {time.monotonic() - start:.1f} s after '
              f'the revoke')
        assert restarted
        wait_for(lambda: len(pygcn_received(redis_url)) >= 7, 60,
                 message='the VOEvent queued during the restart')
        time.sleep(1)
        assert pygcn_received(redis_url) == payloads
    finally:
        client.terminate()
        client.wait()
