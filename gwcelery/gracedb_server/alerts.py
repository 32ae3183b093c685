"""Publishing LVAlert messages through pluggable transports.

A change writes its alerts to the ``outbox`` table in its own transaction
(see :mod:`.store`). One :class:`Publisher` thread per transport sends the
committed rows in order and records how far it got (``alert_cursors``), so
an alert is never published before its change is committed, survives a
restart of the server, and is retried while the transport is down.

Transports implement ``name`` (a stable identifier used as the cursor
key), ``publish(node, message)`` (raise on failure) and ``close()``, and
may implement ``publish_many([(node, message), ...])`` to send a batch at
once:

* :class:`RedisTransport`: the Redis alert stream
  (:mod:`gwcelery.util.alert_stream`) and pub/sub channels ``prefix +
  node``, the message being the JSON text;
* :class:`XMPPTransport`: XMPP publish-subscribe (XEP-0060) on
  ``pubsub.<host>``, the production LVAlert protocol that sleek-lvalert
  receives: each item's payload is ``<entry xmlns="http://jabber.org/protocol/pubsub">JSON</entry>``.
"""

import asyncio
import contextlib
import logging
import netrc
import threading
import time
import uuid
import xml.etree.ElementTree as ET

from ..util.event_loop import close_event_loop

log = logging.getLogger(__name__)

#: Namespace of the ``<entry>`` payload element of LVAlert items.
PUBSUB_NAMESPACE = 'http://jabber.org/protocol/pubsub'


class RedisTransport:
    """Append alerts to the Redis alert stream that the listener consumes,
    and publish each on the pub/sub channel ``prefix + node`` for
    observers (see :mod:`gwcelery.util.alert_stream`)."""

    def __init__(self, url, prefix='lvalert:', max_length=100000):
        import redis

        from ..util.alert_stream import AlertStream

        self.url = url
        self.prefix = prefix
        self.name = f'redis {url} {prefix}'
        self.client = redis.Redis.from_url(url, socket_timeout=10,
                                           socket_connect_timeout=10)
        self.stream = AlertStream(self.client, prefix, max_length)

    def publish(self, node, message):
        self.stream.append_many([(node, message)])

    def publish_many(self, items):
        """Append and publish ``(node, message)`` pairs in one round
        trip."""
        self.stream.append_many(items)

    def close(self):
        self.client.close()


class XMPPTransport:
    """Publish alerts as XMPP pubsub items (slixmpp, XEP-0060).

    Credentials are ``username``/``password``, or else the netrc entry of
    ``host`` (``netrc_file``, default ``$NETRC`` or ``~/.netrc``). Nodes
    that do not exist yet are created, which needs an account that may
    create pubsub nodes (an admin of the XMPP server). ``ca_certs`` is the
    CA bundle that verifies the server's TLS certificate; ``address`` an
    optional ``(host, port)`` to connect to instead of the domain's.
    """

    #: Seconds to wait for the connection and for each publication.
    timeout = 20

    #: Seconds before reconnecting after the connection was lost.
    reconnect_delay = 1.0

    def __init__(self, host, username=None, password=None, netrc_file=None,
                 ca_certs=None, address=None):
        if username is None or password is None:
            auth = netrc.netrc(netrc_file).authenticators(host)
            if auth is None:
                raise ValueError(f'No netrc entry for XMPP server {host}')
            username, _, password = auth
        self.host = host
        self.username = username
        self.password = password
        self.ca_certs = ca_certs
        self.address = address
        self.service = f'pubsub.{host}'
        self.name = f'xmpp {username}@{host}'
        self.nodes = set()
        self.closing = False
        self.loop = None
        self.client = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name='gracedb-xmpp')
        self.thread.start()

    def _run(self):
        import slixmpp

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        client = slixmpp.ClientXMPP(
            f'{self.username}@{self.host}/gracedb-{uuid.uuid4().hex[:8]}',
            self.password)
        client.register_plugin('xep_0060')
        if self.ca_certs:
            client.ca_certs = self.ca_certs

        async def session_start(event):
            client.send_presence()
            self.ready.set()

        def connect():
            if self.address:
                client.connect(*self.address)
            else:
                client.connect()

        async def disconnected(event):
            # slixmpp does not reconnect a session that was lost.
            self.ready.clear()
            if not self.closing:
                log.warning('Lost the XMPP server %s; reconnecting',
                            self.host)
                await asyncio.sleep(self.reconnect_delay)
                connect()

        client.add_event_handler('session_start', session_start)
        client.add_event_handler('disconnected', disconnected)
        client.init_plugins()
        self.client = client
        connect()
        try:
            self.loop.run_forever()
        finally:
            close_event_loop(self.loop)

    async def _publish(self, node, message):
        pubsub = self.client.plugin['xep_0060']
        if node not in self.nodes:
            nodes = await pubsub.get_nodes(self.service, timeout=self.timeout)
            existing = {item[1] for item in nodes['disco_items']['items']}
            if node not in existing:
                await pubsub.create_node(self.service, node,
                                         timeout=self.timeout)
            self.nodes.add(node)
        entry = ET.Element(f'{{{PUBSUB_NAMESPACE}}}entry')
        entry.text = message
        await pubsub.publish(self.service, node, payload=entry,
                             timeout=self.timeout)

    def publish(self, node, message):
        if not self.ready.wait(self.timeout):
            raise ConnectionError(f'not connected to XMPP server {self.host}')
        future = asyncio.run_coroutine_threadsafe(
            self._publish(node, message), self.loop)
        future.result(self.timeout + 5)

    def close(self):
        self.closing = True
        if self.loop is None or self.client is None:
            return

        async def disconnect():
            self.client.disconnect(wait=1)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.disconnected, 5)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(disconnect(), self.loop)
        self.thread.join(10)


class Publisher:
    """A thread that publishes the committed alerts through one transport,
    in commit order, retrying with backoff while the transport fails."""

    #: Longest pause (s) between attempts while the transport fails.
    max_backoff = 10.0

    def __init__(self, store, transport):
        self.store = store
        self.transport = transport
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.db = store.connect()
        self.cursor = store.alert_cursor(self.db, transport.name)
        store.commit_listeners.append(self.wakeup.set)
        self.thread = threading.Thread(
            target=self._run, daemon=True,
            name=f'gracedb-alerts {transport.name}')
        self.thread.start()

    def _run(self):
        backoff = 0.1
        while not self.stopping.is_set():
            self.wakeup.clear()
            rows = self.store.pending_alerts(self.db, self.cursor)
            if not rows:
                self.idle.set()
                self.wakeup.wait(1.0)
                continue
            self.idle.clear()
            published = self.cursor
            try:
                self._publish(rows)
            except Exception:
                log.exception('Publishing alerts after %d over %s failed; '
                              'retrying in %.1f s', self.cursor,
                              self.transport.name, backoff)
                self.stopping.wait(backoff)
                backoff = min(2 * backoff, self.max_backoff)
            else:
                backoff = 0.1
            if self.cursor != published:
                # Once per batch: a crash of the server may publish again
                # what it published since (at least once, never lost).
                self.store.advance_alert_cursor(
                    self.db, self.transport.name, self.cursor)

    def _publish(self, rows):
        """Publish rows in order, moving :attr:`cursor` past each one
        published."""
        publish_many = getattr(self.transport, 'publish_many', None)
        if publish_many is not None:
            publish_many([(row['node'], row['message']) for row in rows])
            self.cursor = rows[-1]['id']
            return
        for row in rows:
            if self.stopping.is_set():
                return
            self.transport.publish(row['node'], row['message'])
            self.cursor = row['id']

    def flush(self, timeout=10):
        """Wait until every committed alert has been published."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cursor >= self.store.last_alert_id():
                return True
            self.wakeup.set()
            time.sleep(0.01)
        return False

    def stop(self):
        self.stopping.set()
        self.wakeup.set()
        self.thread.join(10)
        with contextlib.suppress(ValueError):
            self.store.commit_listeners.remove(self.wakeup.set)
        self.store.release_alert_cursor(self.transport.name)
        self.transport.close()
        self.db.close()
