"""GCN: receive notices, send VOEvents, and the notice handlers.

Three pieces, all speaking the VOEvent Transport Protocol
(:mod:`gwcelery.util.voevent_transport`):

* :func:`listen`, an eternal task, is a client of the GCN VOEvent server
  (:obj:`~gwcelery.conf.gcn_remote_address`:
  :obj:`~gwcelery.conf.gcn_remote_port`). Each packet is parsed once; a
  VOEvent is acknowledged and handed, as its raw bytes, to every task
  registered with :func:`handler` for its GCN notice type (a Celery
  group).
* :func:`send` queues a VOEvent for GCN.
* :func:`broker`, an eternal task, is the VOEvent server that GCN's
  receiver connects to (:obj:`~gwcelery.conf.gcn_bind_address`:
  :obj:`~gwcelery.conf.gcn_bind_port`, only from
  :obj:`~gwcelery.conf.gcn_broker_accept_addresses`); it sends every queued
  VOEvent to every connected client, in order.

The queue and the server are :mod:`gwcelery.util.voevent_broker`, which
the local deployment's mock GCN server runs too.

A packet at fault (not XML, no ivorn, no usable notice type...) is
dead-lettered (:mod:`gwcelery.util.dead_letters`); a VOEvent that cannot
be handed on because the Celery broker is down waits in memory and is
tried again (VTP cannot deliver it again).
"""

import logging
import socket
import time

import lxml.etree
import redis
from celery.utils.log import get_task_logger
from gcn import NoticeType

from .. import app
from ..util import voevent_transport as vtp
from ..util.dead_letters import (
    DeadLetters,
    Rejected,
    RetryQueue,
    is_broker_error,
)
from ..util.dispatch import DispatchTable
from ..util.eternal import (
    POLL_INTERVAL,
    Backoff,
    EternalTask,
    wait_unless_aborted,
)
from ..util.voevent_broker import VOEventQueue, open_server, serve_queue

__all__ = ('NoticeType', 'handler', 'listen', 'send', 'broker')

log = get_task_logger(__name__)

_handlers = DispatchTable(normalize=NoticeType)


def handler(*notice_types, **task_kwargs):
    """Decorator: register a function as a Celery task and as the handler
    of GCN notices of the given types (:class:`NoticeType` members, or
    their integer values).

    Keyword arguments go to ``app.task`` (e.g. ``queue='exttrig',
    shared=False``). The task receives the notice's raw VOEvent bytes::

        @gcn.handler(gcn.NoticeType.FERMI_GBM_GND_POS,
                     gcn.NoticeType.FERMI_GBM_FIN_POS)
        def handle_fermi(payload):
            root = lxml.etree.fromstring(payload)
            ...
    """
    return _handlers.handler(*notice_types, **task_kwargs)


def notice_types_handled():
    """The notice types that have at least one handler."""
    return _handlers.keys()


# --- receiving --------------------------------------------------------------

#: Name of the VOEvent listener in the log and the dead letters.
TRANSPORT = 'GCN'


class MalformedNotice(Rejected, ValueError):
    """A VOEvent without a usable GCN notice type."""


def notice_type(root):
    """The GCN notice type (an int) of a parsed VOEvent: the value of its
    ``What/Param[@name="Packet_Type"]``."""
    param = root.find("./What/Param[@name='Packet_Type']")
    if param is None:
        raise MalformedNotice('a VOEvent with no What/Param named '
                              'Packet_Type')
    try:
        return int(param.get('value'))
    except (TypeError, ValueError):
        raise MalformedNotice(
            f'a VOEvent whose Packet_Type value {param.get("value")!r} is '
            'not an integer') from None


def dispatch_voevent(payload, root):
    """Hand a received VOEvent to the handlers of its notice type.

    Returns the group's result, or ``None`` when nothing handles it (an
    unknown type or a type without handler: logged at debug level).
    Raises :exc:`MalformedNotice` for a VOEvent without a usable type (the
    listener dead-letters it).
    """
    ivorn = root.get('ivorn')
    number = notice_type(root)
    try:
        kind = NoticeType(number)
    except ValueError:
        log.debug('GCN: VOEvent %s has unknown notice type %d; ignored',
                  ivorn, number)
        return None
    result = _handlers.dispatch(kind, payload)
    if result is None:
        log.debug('GCN: no handler for %s (%s); ignored', kind.name, ivorn)
    else:
        log.info('GCN: dispatched %s %s to %d handler(s)', kind.name,
                 ivorn, len(_handlers.tasks(kind)))
    return result


def process_packet(payload, client_ivorn, dispatch=dispatch_voevent,
                   letters=None):
    """Act on one packet received from a VOEvent server.

    Parses it once; hands a VOEvent to ``dispatch(payload, root)``;
    returns the reply to send (an ``ack`` for a VOEvent, an ``iamalive``
    for an ``iamalive``) or ``None``. A packet at fault (not XML, neither
    a VOEvent nor a Transport message, a VOEvent without an ivorn or that
    `dispatch` fails on, e.g. without a usable notice type) is rejected
    to `letters` (a :class:`~gwcelery.util.dead_letters.DeadLetters`;
    ``None``: only logged) and skipped; a VOEvent with an ivorn is
    acknowledged all the same. Raises only the broker errors of
    `dispatch`.
    """
    letters = letters or DeadLetters(None)
    try:
        root = vtp.parse(payload)
    except Exception as exc:  # XMLSyntaxError, or worse
        letters.reject(TRANSPORT, f'a packet that is not XML '
                       f'({type(exc).__name__}: {exc})', payload)
        return None
    kind = vtp.kind(root)
    if kind == 'iamalive':
        log.debug('GCN: iamalive from %s', vtp.origin(root))
        return vtp.transport_message('iamalive', vtp.origin(root) or '',
                                     client_ivorn)
    if kind == 'voevent':
        ivorn = root.get('ivorn')
        if not ivorn:
            letters.reject(TRANSPORT, 'a VOEvent without an ivorn', payload)
            return None
        try:
            dispatch(payload, root)
        except Exception as exc:
            if is_broker_error(exc):
                raise
            letters.reject(TRANSPORT, exc, payload, ivorn=ivorn)
        return vtp.transport_message('ack', ivorn, client_ivorn)
    if kind is None:
        letters.reject(TRANSPORT, f'an XML document with root <{root.tag}>, '
                       'neither a VOEvent nor a Transport message', payload)
    else:
        log.info('GCN: Transport message of role %r from %s', kind,
                 vtp.origin(root))
    return None


def _through(queue):
    """A dispatch for :func:`process_packet` that hands each VOEvent on
    through `queue` (a :class:`~gwcelery.util.dead_letters.RetryQueue`):
    at once, or after the broker is back."""
    def dispatch(payload, root):
        queue.put(payload, lambda: dispatch_voevent(payload, root),
                  ivorn=root.get('ivorn'))
    return dispatch


def _receive(task, sock, backoff, queue):
    """Read packets from a connected GCN server until the connection fails,
    stays silent too long, or the task is aborted; hand the VOEvents on
    through `queue`, retried at each turn."""
    conf = app.conf
    reader = vtp.PacketReader(sock, conf['gcn_max_packet_size'])
    dispatch = _through(queue)
    last_packet = time.monotonic()
    while not task.is_aborted():
        queue.flush()
        payload = reader.read(POLL_INTERVAL)
        if payload is None:
            silence = time.monotonic() - last_packet
            if silence > conf['gcn_listen_timeout']:
                log.warning('GCN: nothing received for %.0f s; reconnecting',
                            silence)
                return
            continue
        last_packet = time.monotonic()
        backoff.reset()
        try:
            reply = process_packet(payload, conf['gcn_listen_ivorn'],
                                   dispatch, queue.letters)
        except Exception as exc:  # a bug: skip the packet, not the stream
            queue.letters.reject(TRANSPORT, exc, payload)
            reply = None
        if reply is not None:
            vtp.send_packet(sock, reply)


def _open_with_backoff(task, open_socket, address, backoff, level, failure):
    """Return ``open_socket(address)``, trying again after each
    :exc:`OSError` (logged at `level` as `failure` followed by the address
    and the reason) with the backoff's next delay; ``None`` once the task
    is aborted."""
    while not task.is_aborted():
        try:
            return open_socket(address)
        except OSError as exc:
            delay = backoff.next()
            log.log(level, '%s %s:%d (%s); retrying in %.0f s', failure,
                    *address, exc, delay)
            wait_unless_aborted(task, delay)
    return None


@app.task(base=EternalTask, bind=True, shared=False)
def listen(self):
    """Receive GCN notices and dispatch them to their handlers (eternal).

    Connects to :obj:`~gwcelery.conf.gcn_remote_address`:
    :obj:`~gwcelery.conf.gcn_remote_port`, acknowledges each VOEvent and
    answers ``iamalive``; see :func:`process_packet` for what happens to
    each packet. Reconnects with a delay that doubles from
    :obj:`~gwcelery.conf.listener_reconnect_delay_min` to
    :obj:`~gwcelery.conf.listener_reconnect_delay_max` (reset by a good
    packet) when the server cannot be reached, closes the connection,
    breaks the framing, or stays silent for
    :obj:`~gwcelery.conf.gcn_listen_timeout` seconds. With
    :obj:`~gwcelery.conf.gcn_kafka_url`, reads GCN's Kafka topics instead
    (:mod:`gwcelery.kafka.gcn_notices`).
    """
    conf = app.conf
    if conf['gcn_kafka_url']:
        # GCN's Kafka topics instead of its VOEvent server.
        from ..kafka import gcn_notices
        gcn_notices.listen(self, conf, notice_types_handled(),
                           dispatch_voevent)
        log.info('GCN: listener stopped')
        return
    letters = DeadLetters.from_conf(conf)
    queue = RetryQueue(letters, TRANSPORT, Backoff(
        conf['listener_reconnect_delay_min'],
        conf['listener_reconnect_delay_max']))
    try:
        _connect_and_receive(self, conf, queue)
    finally:
        if queue:
            log.error('GCN: stopping with %d VOEvent(s) not handed on (the '
                      'Celery broker is down); they are lost', len(queue))
        letters.close()
    log.info('GCN: listener stopped')


def _connect_and_receive(task, conf, queue):
    """The VOEvent listener's loop: connect, receive, reconnect."""
    address = (conf['gcn_remote_address'], int(conf['gcn_remote_port']))
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    while not task.is_aborted():
        sock = _open_with_backoff(
            task, lambda address: socket.create_connection(address, 10),
            address, backoff, logging.WARNING, 'GCN: cannot connect to')
        if sock is None:
            break
        log.info('GCN: connected to %s:%d', *address)
        try:
            with sock:
                _receive(task, sock, backoff, queue)
        except (OSError, vtp.ProtocolError) as exc:
            log.warning('GCN: connection to %s:%d lost: %s', *address, exc)
        if not task.is_aborted():
            delay = backoff.next()
            log.info('GCN: reconnecting in %.0f s', delay)
            wait_unless_aborted(task, delay)


# --- sending ----------------------------------------------------------------

#: Seconds for which :func:`send` remembers the IVORNs it queued, so that a
#: redelivered or retried send does not queue a VOEvent twice.
SENT_IVORN_MEMORY = 7 * 86400

# Queue a VOEvent unless its IVORN was queued already, in one step: a
# worker that dies between the check and the append cannot leave a
# duplicate behind. KEYS: the stream, the IVORN's marker; ARGV: the
# payload, the stream's approximate maximum length, the marker's lifetime.
_APPEND_ONCE = """
local seen = redis.call('get', KEYS[2])
if seen then
    return {0, seen}
end
local entry_id = redis.call('xadd', KEYS[1], 'maxlen', '~', ARGV[2], '*',
                            'voevent', ARGV[1])
redis.call('set', KEYS[2], entry_id, 'ex', ARGV[3])
return {1, entry_id}
"""


@app.task(shared=False, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=(redis.ConnectionError, redis.TimeoutError),
          retry_backoff=True, retry_backoff_max=60, max_retries=None)
def send(payload):
    """Queue a VOEvent (bytes) for :func:`broker` to send to GCN; return
    its entry id in the queue.

    Refuses (:exc:`ValueError`) a payload that is not a VOEvent with an
    IVORN, so that nothing malformed ever reaches GCN. Retries while the
    Redis server is unreachable. The message is acknowledged only once the
    VOEvent is queued (a worker lost before that gets it redelivered), and
    a VOEvent whose IVORN was queued already is not queued again: its
    first entry id is returned.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    try:
        root = vtp.parse(payload)
    except lxml.etree.XMLSyntaxError as exc:
        raise ValueError(f'not a VOEvent: not XML ({exc}): '
                         f'{vtp.describe(payload)}') from None
    if vtp.kind(root) != 'voevent' or not root.get('ivorn'):
        raise ValueError(f'not a VOEvent with an ivorn: root <{root.tag}>')
    ivorn = root.get('ivorn')
    queue = VOEventQueue(app.conf)
    try:
        new, entry_id = queue.redis.eval(
            _APPEND_ONCE, 2, queue.key, f'{queue.key}:sent:{ivorn}',
            payload, queue.max_length, SENT_IVORN_MEMORY)
    finally:
        queue.close()
    entry_id = entry_id.decode()
    if new:
        log.info('GCN: queued VOEvent %s for the broker (entry %s)', ivorn,
                 entry_id)
    else:
        log.info('GCN: VOEvent %s was queued already (entry %s)', ivorn,
                 entry_id)
    return entry_id


def _bind(task):
    """Listen on the broker's address, retrying while it is taken."""
    conf = app.conf
    address = (conf['gcn_bind_address'], int(conf['gcn_bind_port']))
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    server = _open_with_backoff(task, open_server, address, backoff,
                                logging.ERROR, 'GCN broker: cannot listen on')
    if server is not None:
        log.info('GCN broker: listening on %s:%d', *address)
    return server


@app.task(base=EternalTask, bind=True, shared=False)
def broker(self):
    """Serve the queued VOEvents to GCN's receiver (eternal).

    A VOEvent Transport Protocol server
    (:func:`gwcelery.util.voevent_broker.serve_queue`) on
    :obj:`~gwcelery.conf.gcn_bind_address`:
    :obj:`~gwcelery.conf.gcn_bind_port`, for the clients from
    :obj:`~gwcelery.conf.gcn_broker_accept_addresses` (host names are
    resolved at each connection; others are closed at once). Each client
    gets every VOEvent queued by :func:`send`, in order, and must
    acknowledge each within :obj:`~gwcelery.conf.gcn_broker_reply_timeout`
    seconds; what it did not acknowledge is sent again when it reconnects.
    """
    server = _bind(self)
    if server is None:
        return
    serve_queue(server, self.is_aborted,
                app.conf['gcn_broker_accept_addresses'], app.conf)
