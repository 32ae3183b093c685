"""The XMPP transport of LVAlert: sleek-lvalert, the production protocol.

:func:`listen` logs in to :obj:`~gwcelery.conf.lvalert_host` with the
netrc credentials of that host, subscribes to each node on
``pubsub.<lvalert_host>`` (again after each login, and every
:obj:`~gwcelery.conf.lvalert_resubscribe_interval` for nodes it could not
subscribe to) and hands each item's JSON text to its callback. It
reconnects with a doubling delay after each disconnection.

XMPP cannot deliver an item again: one that could not be handed on because
the Celery broker is down waits in memory (a
:class:`~gwcelery.util.dead_letters.RetryQueue`, in order with those that
follow it) and is tried again after a doubling delay; one that fails for
any other reason (not JSON, nested too deep...) is dead-lettered.
"""

import asyncio
import logging
import time

from slixmpp.exceptions import IqError, IqTimeout

from .dead_letters import DeadLetters, RetryQueue
from .eternal import POLL_INTERVAL, Backoff, wait_unless_aborted
from .event_loop import close_event_loop

log = logging.getLogger(__name__)

#: Name of the transport in the log and the dead letters.
TRANSPORT = 'LVAlert'


def make_client(conf):
    """An LVAlert client for the configured server (not connected)."""
    from sleek_lvalert import LVAlertClient

    client = LVAlertClient(server=conf['lvalert_host'],
                           netrc=conf['lvalert_netrc'])
    if conf['lvalert_ca_certs']:
        # sleek-lvalert pins its own CA bundle; a private server (e.g. a
        # local prosody) has its own certificate.
        client.ca_certs = conf['lvalert_ca_certs']
    client.register_plugin('xep_0199', {
        'keepalive': True,
        'interval': float(conf['lvalert_keepalive_interval']),
        'timeout': float(conf['lvalert_keepalive_interval'])})
    return client


class Session:
    """Run one sleek-lvalert client in the task's thread until aborted:
    subscribe after each login, reconnect with backoff after each
    disconnection."""

    def __init__(self, task, conf, nodes, client, loop, process_message,
                 letters):
        self.task = task
        self.process_message = process_message
        self.letters = letters
        self.queue = RetryQueue(letters, TRANSPORT, Backoff(
            conf['listener_reconnect_delay_min'],
            conf['listener_reconnect_delay_max']))
        self.nodes = nodes
        self.client = client
        self.loop = loop
        self.missing = set(nodes)
        self.reported = set()
        self.in_session = False
        self.stopping = False
        self.resubscribe_interval = float(
            conf['lvalert_resubscribe_interval'])
        self.backoff = Backoff(conf['listener_reconnect_delay_min'],
                               conf['listener_reconnect_delay_max'])
        port = conf['lvalert_port']
        self.address = ((conf['lvalert_host'], int(port)) if port
                        else (None, None))
        # Not sleek-lvalert's listen(): it logs a whole traceback for
        # each failure and cannot tell a bad item from a broker failure.
        client.add_event_handler('pubsub_publish', self.on_item)
        client.add_event_handler('session_start', self.on_session_start)
        client.add_event_handler('disconnected', self.on_disconnected)
        client.add_event_handler('failed_all_auth', self.on_failed_auth)

    def on_item(self, msg):
        """Hand a published item's text on, through the retry queue."""
        try:
            items = msg['pubsub_event']['items']
            node, item = items['node'], items['item']
            item_id, payload = item['id'], item['payload']
        except Exception as exc:  # a stanza that slixmpp cannot read
            self.letters.reject(TRANSPORT, exc, str(msg))
            return
        if payload is None or payload.text is None:
            self.letters.reject(TRANSPORT, 'an item without a text payload',
                                str(item), node=node, xmpp_item=item_id)
            return
        text = payload.text
        self.queue.put(
            text, lambda: self.process_message(node, text), node=node,
            xmpp_item=item_id)

    def connect(self):
        if not self.stopping:
            self.client.connect(*self.address)

    async def subscribe_missing(self):
        for node in sorted(self.missing):
            try:
                await self.client.subscribe(node)
            except (IqError, IqTimeout) as exc:
                reason = (exc.iq['error']['condition']
                          if isinstance(exc, IqError) else 'no answer')
                if node in self.reported:
                    log.debug('LVAlert: still cannot subscribe to node %s '
                              '(%s)', node, reason)
                else:
                    self.reported.add(node)
                    log.warning('LVAlert: cannot subscribe to node %s (%s); '
                                'retrying every %.0f s', node, reason,
                                self.resubscribe_interval)
            else:
                self.missing.discard(node)
                log.info('LVAlert: subscribed to node %s', node)

    async def on_session_start(self, event):
        log.info('LVAlert: logged in to %s as %s', self.client.boundjid.host,
                 self.client.boundjid.bare)
        self.backoff.reset()
        self.in_session = True
        self.missing = set(self.nodes)
        self.reported = set()
        await self.subscribe_missing()

    def on_failed_auth(self, event):
        log.error('LVAlert: the XMPP server refused the credentials of %s',
                  self.client.boundjid.bare)

    def on_disconnected(self, event):
        self.in_session = False
        if self.stopping:
            return
        delay = self.backoff.next()
        log.warning('LVAlert: disconnected from the XMPP server (%s); '
                    'reconnecting in %.0f s', event, delay)
        self.loop.call_later(delay, self.connect)

    async def run(self):
        self.connect()
        last_resubscribe = time.monotonic()
        while not self.task.is_aborted():
            await asyncio.sleep(POLL_INTERVAL)
            self.queue.flush()
            if (self.missing and self.in_session
                    and time.monotonic() - last_resubscribe
                    > self.resubscribe_interval):
                last_resubscribe = time.monotonic()
                await self.subscribe_missing()
        self.stopping = True
        if self.queue:
            log.error('LVAlert: stopping with %d item(s) not handed on '
                      '(the Celery broker is down); they are lost',
                      len(self.queue))
        self.client.disconnect()
        try:
            await asyncio.wait_for(self.client.disconnected, 5)
        except asyncio.TimeoutError:
            pass


def listen(task, conf, nodes, process_message):
    """Receive the nodes' items and hand each to ``process_message(node,
    text)`` until `task` is aborted; `conf` is the app's configuration.
    ``process_message`` raises a broker error when the broker is down (the
    item is tried again later) and any other exception for an item at
    fault (dead-lettered)."""
    letters = DeadLetters.from_conf(conf)
    try:
        _listen(task, conf, nodes, process_message, letters)
    finally:
        letters.close()


def _listen(task, conf, nodes, process_message, letters):
    """The loop of :func:`listen`: one client per event loop."""
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    while not task.is_aborted():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                client = make_client(conf)
            except (RuntimeError, OSError) as exc:
                delay = backoff.next()
                log.error('LVAlert: cannot set up the XMPP client for %s '
                          '(%s); retrying in %.0f s', conf['lvalert_host'],
                          exc, delay)
                wait_unless_aborted(task, delay)
                continue
            session = Session(task, conf, nodes, client, loop,
                              process_message, letters)
            loop.run_until_complete(session.run())
        finally:
            close_event_loop(loop)
