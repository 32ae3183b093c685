"""Alerts of the local GraceDB server over XMPP pubsub (real prosody),
received by a sleek-lvalert client as the LVAlert listener receives them."""

import asyncio
import json
import os
import threading
import time

import pytest
from gracedb_sdk import Client

from gwcelery.gracedb_server import GraceDbServer
from gwcelery.gracedb_server.alerts import XMPPTransport
from gwcelery.util.event_loop import close_event_loop

from .conftest import DATA_DIR

pytestmark = pytest.mark.integration

NODES = ('superevent', 'cbc_gstlal', 'cbc_gstlal_allsky')


class Receiver:
    """A sleek-lvalert client (ordinary account) subscribed to ``NODES``,
    collecting ``(node, alert)`` in a thread of its own."""

    def __init__(self, xmpp_server):
        self.alerts = []
        self.subscribed = threading.Event()
        self.loop = None
        self.client = None
        self.thread = threading.Thread(target=self._run, args=(xmpp_server,),
                                       daemon=True)
        self.thread.start()
        assert self.subscribed.wait(30), 'the receiver did not subscribe'

    def _run(self, xmpp_server):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.client = xmpp_server.client(xmpp_server.username,
                                         xmpp_server.password)

        async def subscribe(event):
            await self.client.subscribe(*NODES)
            self.subscribed.set()

        self.client.add_event_handler('session_start', subscribe)
        self.client.listen(lambda node, payload: self.alerts.append(
            (node, json.loads(payload))))
        try:
            self.client.start()
        finally:
            close_event_loop(self.loop)

    def wait_for(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.alerts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.alerts

    def close(self):
        self.client.stop()
        self.thread.join(10)


def test_alerts_over_xmpp(tmp_path, xmpp_server):
    xmpp_server.create_nodes(*NODES)
    receiver = Receiver(xmpp_server)
    transport = XMPPTransport(
        xmpp_server.host, username=xmpp_server.admin_username,
        password=xmpp_server.admin_password, ca_certs=xmpp_server.ca_certs,
        address=('127.0.0.1', xmpp_server.port))
    try:
        with GraceDbServer(str(tmp_path / 'gracedb'), port=0,
                           transports=[transport]) as server:
            client = Client(server.url, force_noauth=True)
            with open(os.path.join(DATA_DIR, 'gracedb', 'coinc.xml'),
                      'rb') as f:
                event = client.events.create(
                    filename='coinc.xml', filecontents=f.read(),
                    group='CBC', pipeline='gstlal', search='AllSky')
            superevent = client.superevents.create(
                t_start=event['gpstime'] - 1, t_0=event['gpstime'],
                t_end=event['gpstime'] + 1, preferred_event=event['graceid'])
            sid = superevent['superevent_id']
            client.superevents[sid].labels.create('EM_READY')
            alerts = receiver.wait_for(8)
            time.sleep(0.2)  # nothing more should come
    finally:
        receiver.close()

    assert [(node, alert['uid'], alert['alert_type'])
            for node, alert in alerts] == [
        ('cbc_gstlal', 'G0001', 'new'),
        ('cbc_gstlal_allsky', 'G0001', 'new'),
        ('superevent', sid, 'new'),
        ('cbc_gstlal', 'G0001', 'added_to_superevent'),
        ('cbc_gstlal_allsky', 'G0001', 'added_to_superevent'),
        ('cbc_gstlal', 'G0001', 'selected_as_preferred'),
        ('cbc_gstlal_allsky', 'G0001', 'selected_as_preferred'),
        ('superevent', sid, 'label_added'),
    ][:len(alerts)]
    assert len(alerts) == 8
    assert alerts[2][1]['object']['links']['self'] == \
        f'{server.url}superevents/{sid}/'
    assert alerts[-1][1]['data']['name'] == 'EM_READY'


def test_xmpp_creates_missing_nodes(tmp_path, xmpp_server):
    """The publisher creates a node that does not exist yet."""
    transport = XMPPTransport(
        xmpp_server.host, username=xmpp_server.admin_username,
        password=xmpp_server.admin_password, ca_certs=xmpp_server.ca_certs,
        address=('127.0.0.1', xmpp_server.port))
    node = f'test_node_{os.getpid()}_{time.monotonic_ns()}'
    try:
        transport.publish(node, json.dumps({'alert_type': 'new'}))
    finally:
        transport.close()

    async def nodes(client):
        return await client.get_nodes()

    assert node in xmpp_server.run_client(nodes)


def test_xmpp_reconnects_after_a_lost_connection(xmpp_server):
    transport = XMPPTransport(
        xmpp_server.host, username=xmpp_server.admin_username,
        password=xmpp_server.admin_password, ca_certs=xmpp_server.ca_certs,
        address=('127.0.0.1', xmpp_server.port))
    node = f'test_reconnect_{os.getpid()}_{time.monotonic_ns()}'
    try:
        transport.publish(node, '{}')
        # Drop the TCP connection under the client's feet.
        transport.loop.call_soon_threadsafe(
            transport.client.transport.abort)
        deadline = time.monotonic() + 5
        while transport.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not transport.ready.is_set()
        transport.publish(node, '{"again": true}')  # waits for the session
    finally:
        transport.close()

    async def items(client):
        result = await client.plugin['xep_0060'].get_items(
            xmpp_server.pubsub_service, node)
        return [item['payload'].text
                for item in result['pubsub']['items']['substanzas']]

    assert '{"again": true}' in xmpp_server.run_client(items)
