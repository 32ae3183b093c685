"""LVAlert: receive GraceDB's alerts and dispatch them by node.

:func:`listen`, an eternal task, receives the LVAlert messages of every
node (topic) that has a handler and hands each, decoded, to the tasks
registered for its node with :func:`handler` (a Celery group). Three
transports, chosen by :obj:`~gwcelery.conf.lvalert_transport`:

``'xmpp'``
    XMPP publish-subscribe with sleek-lvalert, the production LVAlert
    protocol (:mod:`gwcelery.util.lvalert_xmpp`): the client logs in to
    :obj:`~gwcelery.conf.lvalert_host` with the netrc credentials of that
    host, subscribes to each node on ``pubsub.<lvalert_host>`` and
    receives each item's JSON text.
``'redis'``
    A Redis stream (one machine, :mod:`gwcelery.util.alert_stream`): the
    listener reads from its cursor, so nothing published while it is down
    is lost, and each message is handed on at least once.
``'kafka'``
    igwn-alert's Kafka topics (:mod:`gwcelery.kafka.igwn_alert`).

A message is ``{"uid", "alert_type", "data", "object"}``. One that is not
JSON or lacks these fields is logged and skipped (the listener keeps it
as a dead letter, :mod:`gwcelery.util.dead_letters`); one whose
``object.links.self`` (or ``object.self``) is not on the configured
GraceDB server (:obj:`~gwcelery.conf.gracedb_url`) is ignored, since it is
not ours.
"""

import functools
import json

from celery.utils.log import get_task_logger

from .. import app
from ..util import alert_stream, lvalert_xmpp
from ..util.dead_letters import Rejected
from ..util.dispatch import DispatchTable
from ..util.eternal import EternalTask, wait_unless_aborted

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


def decode_message(node, text):
    """The alert of one message (JSON text) received on `node`; raise
    :exc:`Rejected` naming the message and what is wrong with it if it is
    not an LVAlert message."""
    try:
        alert = json.loads(text)
    except Exception as exc:
        # Any: RecursionError (nested deeper than the parser goes),
        # UnicodeDecodeError, MemoryError, TypeError (no text)...
        raise Rejected(f'a message on {node} that is not JSON '
                       f'({type(exc).__name__}: {exc})') from None
    try:
        reason = _malformed(alert)
    except Exception as exc:  # e.g. "links" that is a list
        reason = f'malformed ({type(exc).__name__}: {exc})'
    if reason is not None:
        raise Rejected(f'a message on {node}: {reason}')
    return alert


def process_message(node, text, broker_errors=(), strict=False):
    """Decode one message (JSON text) received on `node` and dispatch it.

    Returns the group's result, or ``None`` if the message was skipped
    (malformed, not ours, or no handler). Raises the exceptions of
    `broker_errors` that dispatching meets (the transport hands the
    message on again later). Bad input and other failures of dispatching
    are logged, or, if `strict`, raised (:exc:`Rejected` for bad input),
    for the transport to dead-letter the message.
    """
    try:
        alert = decode_message(node, text)
    except Rejected as exc:
        if strict:
            raise
        log.warning('LVAlert: skipping %s: %.80r', exc, text)
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
        if strict:
            raise
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
    # A broker error leaves the message unread (Redis stream), its offset
    # uncommitted (Kafka) or waiting in memory (XMPP): it is handed on
    # again later. Any other exception dead-letters the message.
    process_or_raise = functools.partial(
        process_message, broker_errors=alert_stream.BROKER_ERRORS,
        strict=True)
    if transport == 'xmpp':
        lvalert_xmpp.listen(self, app.conf, nodes, process_or_raise)
    elif transport == 'redis':
        alert_stream.listen(self, app.conf, nodes, process_or_raise)
    elif transport == 'kafka':
        from ..kafka import igwn_alert

        igwn_alert.listen(self, app.conf, nodes, process_or_raise)
    else:
        log.error('LVAlert: unknown lvalert_transport %r (expected '
                  "'xmpp', 'redis' or 'kafka'); idle until stopped", transport)
        while not wait_unless_aborted(self, 60):
            pass
    log.info('LVAlert: listener stopped')
