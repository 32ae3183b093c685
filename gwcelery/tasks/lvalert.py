"""LVAlert: receive GraceDB's alerts and dispatch them by node.

:func:`listen`, an eternal task, receives the LVAlert messages of every
node (topic) that has a handler and hands each, decoded, to the tasks
registered for its node with :func:`handler` (a Celery group). Two
transports, chosen by :obj:`~gwcelery.conf.lvalert_transport`:

``'xmpp'``
    XMPP publish-subscribe with sleek-lvalert, the production LVAlert
    protocol: the client logs in to :obj:`~gwcelery.conf.lvalert_host`
    with the netrc credentials of that host, subscribes to each node on
    ``pubsub.<lvalert_host>`` and receives each item's JSON text.
``'redis'``
    A Redis stream (one machine, :mod:`gwcelery.util.alert_stream`): the
    listener reads from its cursor, so nothing published while it is down
    is lost, and each message is handed on at least once.

A message is ``{"uid", "alert_type", "data", "object"}``. One that is not
JSON or lacks these fields is logged and skipped; one whose
``object.links.self`` (or ``object.self``) is not on the configured
GraceDB server (:obj:`~gwcelery.conf.gracedb_url`) is ignored, since it is
not ours.
"""

import asyncio
import functools
import json
import time

import kombu.exceptions
import redis
from celery.utils.log import get_task_logger
from slixmpp.exceptions import IqError, IqTimeout

from .. import app
from ..util.alert_stream import AlertStream, next_published
from ..util.dispatch import DispatchTable
from ..util.eternal import (
    POLL_INTERVAL,
    Backoff,
    EternalTask,
    wait_unless_aborted,
)
from ..util.event_loop import close_event_loop

__all__ = ('handler', 'listen', 'process_message', 'is_ours',
           'nodes_handled')

log = get_task_logger(__name__)

_handlers = DispatchTable(normalize=str)


def handler(*nodes, alert_types=None, when=None, **task_kwargs):
    """Decorator: register a function as a Celery task and as the handler
    of LVAlert messages of the given nodes.

    Keyword arguments go to ``app.task`` (e.g. ``queue='superevent',
    shared=False``), except `alert_types` and `when`: if given, the task
    is sent only the alerts of these types (``'new'``, ``'label_added'``,
    ``'log'``, ...) for which the predicate `when` (a pure function of
    the alert, e.g. :func:`label_is`) is true, and the others cost it
    nothing: no message, no hop, no worker process on the alerts' path.
    The task itself applies `when` too, so a direct call filters alike.
    The task receives the decoded alert (a dict)::

        @lvalert.handler('cbc_gstlal', 'cbc_pycbc', 'cbc_mbtaonline',
                         alert_types=('label_added',),
                         when=lvalert.label_is('SKYMAP_READY'))
        def handle_cbc(alert):
            ...
    """
    accepts = None
    if alert_types is not None or when is not None:
        alert_types = None if alert_types is None else frozenset(alert_types)

        def accepts(alert):
            return ((alert_types is None
                     or alert['alert_type'] in alert_types)
                    and (when is None or when(alert)))
    register = _handlers.handler(*nodes, accepts=accepts, **task_kwargs)
    if when is None:
        return register

    def decorate(func):
        @functools.wraps(func)
        def when_accepted(*args):
            # The task called directly (eager mode, tests, a console
            # action) filters as the listener does.
            return func(*args) if when(args[-1]) else None
        return register(when_accepted)
    return decorate


def label_is(*names):
    """Predicate for :func:`handler`'s ``when``: a ``label_added`` alert
    of one of the labels ``names``."""
    names = frozenset(names)

    def accepts(alert):
        return (alert.get('data') or {}).get('name') in names
    return accepts


def nodes_handled():
    """The nodes that have at least one handler, sorted."""
    return sorted(_handlers.keys())


def server_root(url):
    """The part of a GraceDB URL before its ``/api/`` (or the URL)."""
    root, api, _ = url.partition('/api/')
    if api:
        return root
    url = url.rstrip('/')
    return url.removesuffix('/api')


def self_url(alert):
    """The URL of the alert's object: ``object.links.self``, or
    ``object.self`` (older messages), or ``None``."""
    obj = alert['object']
    url = (obj.get('links') or {}).get('self') or obj.get('self')
    return url if isinstance(url, str) else None


def is_ours(alert):
    """Whether the alert's object lives on the configured GraceDB server:
    its :func:`self_url` has the same server root as
    :obj:`~gwcelery.conf.gracedb_url`."""
    url = self_url(alert)
    return url is not None and (
        server_root(url) == server_root(app.conf['gracedb_url']))


def _malformed(alert):
    """Why `alert` is not an LVAlert message, or ``None`` if it is one."""
    if not isinstance(alert, dict):
        return f'a JSON {type(alert).__name__}, not an object'
    missing = [key for key in ('uid', 'alert_type', 'object')
               if key not in alert]
    if missing:
        return f'missing {", ".join(missing)}'
    if not isinstance(alert['object'], dict):
        return 'its "object" is not an object'
    if self_url(alert) is None:
        return 'its object has no links.self (nor self) URL'
    return None


def process_message(node, text, broker_errors=()):
    """Decode one message (JSON text) received on `node` and dispatch it.

    Returns the group's result, or ``None`` if the message was skipped
    (malformed, not ours, or no handler). Never raises for bad input;
    raises the exceptions of `broker_errors` that dispatching meets (the
    stream transport then hands the message on again later) and logs any
    other.
    """
    try:
        alert = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser goes.
        log.warning('LVAlert: skipping a message on %s that is not JSON '
                    '(%s): %.80r', node, exc, text)
        return None
    reason = _malformed(alert)
    if reason is not None:
        log.warning('LVAlert: skipping a message on %s: %s: %.80r', node,
                    reason, text)
        return None
    if not is_ours(alert):
        log.info('LVAlert: ignoring %s %s on %s: it comes from %s, not '
                 'from the configured GraceDB %s', alert['alert_type'],
                 alert['uid'], node, self_url(alert),
                 app.conf['gracedb_url'])
        return None
    try:
        result = _handlers.dispatch(node, alert)
    except broker_errors:
        raise
    except Exception:
        log.exception('LVAlert: could not dispatch %s %s on %s',
                      alert['alert_type'], alert['uid'], node)
        return None
    if result is None:
        log.debug('LVAlert: no handler for %s alerts on node %s',
                  alert['alert_type'], node)
    else:
        log.info('LVAlert: dispatched %s %s on %s', alert['alert_type'],
                 alert['uid'], node)
    return result


# --- Redis stream transport -----------------------------------------------

#: Failures to reach the broker while dispatching: the entry stays unread.
_BROKER_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError)

def _handle_entries(stream, entries, channels):
    """Hand each stream entry of a handled node to its handlers, moving
    the cursor past it once it is handed on (at least once)."""
    for entry_id, node, message in entries:
        if node in channels.values():
            if message is None:
                log.warning('LVAlert: stream entry %s on %s has no message',
                            entry_id, node)
            else:
                try:
                    process_message(node, message, _BROKER_ERRORS)
                except _BROKER_ERRORS:
                    raise  # not handed on: read again after reconnecting
                except Exception:
                    # A message that breaks the listener must not stop
                    # the stream behind it (it would come back forever).
                    log.exception('LVAlert: skipping stream entry %s on %s',
                                  entry_id, node)
        stream.save_cursor(entry_id)


def _drain(pubsub, timeout):
    """Wait up to ``timeout`` s for a wake-up on the channels; take every
    pending one (their contents are in the stream)."""
    message = next_published(pubsub, timeout)
    while message is not None:
        message = next_published(pubsub, 0)


def _listen_redis(task, nodes):
    conf = app.conf
    url = conf['lvalert_redis_url'] or conf.broker_url
    prefix = conf['lvalert_redis_channel_prefix']
    channels = {prefix + node: node for node in nodes}
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    while not task.is_aborted():
        client = redis.Redis.from_url(url, socket_connect_timeout=10,
                                      socket_timeout=30,
                                      health_check_interval=30)
        stream = AlertStream(client, prefix)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*channels)
            cursor = stream.cursor(conf['lvalert_redis_stream_max_age'])
            log.info('LVAlert: subscribed to %d Redis channel(s) %s*; '
                     'reading the stream %s after %s', len(channels), prefix,
                     stream.key, cursor)
            backoff.reset()
            while not task.is_aborted():
                entries = stream.read_after(cursor)
                if entries:
                    _handle_entries(stream, entries, channels)
                    cursor = entries[-1][0]
                else:
                    _drain(pubsub, POLL_INTERVAL)
        except _BROKER_ERRORS as exc:
            delay = backoff.next()
            log.warning('LVAlert: Redis at %s failed (%s); reconnecting in '
                        '%.0f s', url, exc, delay)
            wait_unless_aborted(task, delay)
        finally:
            pubsub.close()
            client.close()


# --- XMPP transport (sleek-lvalert) ---------------------------------------

def _make_xmpp_client():
    """An LVAlert client for the configured server (not connected)."""
    from sleek_lvalert import LVAlertClient

    conf = app.conf
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


class _XMPPSession:
    """Run one sleek-lvalert client in the task's thread until aborted:
    subscribe after each login, reconnect with backoff after each
    disconnection."""

    def __init__(self, task, nodes, client, loop):
        conf = app.conf
        self.task = task
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
        client.listen(process_message)
        client.add_event_handler('session_start', self.on_session_start)
        client.add_event_handler('disconnected', self.on_disconnected)
        client.add_event_handler('failed_all_auth', self.on_failed_auth)

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
            if (self.missing and self.in_session
                    and time.monotonic() - last_resubscribe
                    > self.resubscribe_interval):
                last_resubscribe = time.monotonic()
                await self.subscribe_missing()
        self.stopping = True
        self.client.disconnect()
        try:
            await asyncio.wait_for(self.client.disconnected, 5)
        except asyncio.TimeoutError:
            pass


def _listen_xmpp(task, nodes):
    conf = app.conf
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    while not task.is_aborted():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                client = _make_xmpp_client()
            except (RuntimeError, OSError) as exc:
                delay = backoff.next()
                log.error('LVAlert: cannot set up the XMPP client for %s '
                          '(%s); retrying in %.0f s', conf['lvalert_host'],
                          exc, delay)
                wait_unless_aborted(task, delay)
                continue
            session = _XMPPSession(task, nodes, client, loop)
            loop.run_until_complete(session.run())
        finally:
            close_event_loop(loop)


@app.task(base=EternalTask, bind=True, shared=False)
def listen(self):
    """Receive LVAlert messages and dispatch them to their handlers
    (eternal).

    Uses the transport named by :obj:`~gwcelery.conf.lvalert_transport`
    (see the module docstring), for every node that has a handler; see
    :func:`process_message` for what happens to each message. Reconnects
    with a delay that doubles from
    :obj:`~gwcelery.conf.listener_reconnect_delay_min` to
    :obj:`~gwcelery.conf.listener_reconnect_delay_max`.
    """
    nodes = nodes_handled()
    transport = app.conf['lvalert_transport']
    log.info('LVAlert: listening over %s for %d node(s): %s', transport,
             len(nodes), ', '.join(nodes))
    if transport == 'xmpp':
        _listen_xmpp(self, nodes)
    elif transport == 'redis':
        _listen_redis(self, nodes)
    elif transport == 'kafka':
        from ..kafka import igwn_alert

        def process_or_raise(node, text):
            # Raising leaves the offset uncommitted: read again later.
            return process_message(node, text, _BROKER_ERRORS)
        igwn_alert.listen(self, app.conf, nodes, process_or_raise)
    else:
        log.error('LVAlert: unknown lvalert_transport %r (expected '
                  "'xmpp', 'redis' or 'kafka'); idle until stopped", transport)
        while not wait_unless_aborted(self, 60):
            pass
    log.info('LVAlert: listener stopped')
