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

The queue (:class:`VOEventQueue`) is a Redis *stream* in the broker's
Redis (key :obj:`~gwcelery.conf.gcn_broker_queue_key`): an append-only log
whose entries have increasing ids, plus a hash of *cursors*, one per
client address: the id of the last entry that a client from that address
acknowledged. A client that connects is sent the entries after its
address's cursor (or, for an address never seen, every entry kept, which
is at most :obj:`~gwcelery.conf.gcn_broker_queue_max_age` seconds old),
then each new one as it is queued. The broker sends one VOEvent at a time
and moves the cursor only when the client has acknowledged it, so

* a VOEvent queued while no client is connected, or while the broker is
  down or restarting, waits in the stream and is sent at the next
  connection;
* each connection receives each entry at most once (its own cursor only
  moves forward); an entry that a connection did not acknowledge before
  it broke is sent again on the next connection (at-least-once across
  connections, as VTP receivers expect);
* several clients connected at the same time each get every entry, since
  each connection reads the log with its own cursor; nothing is popped.

The stream is trimmed to about
:obj:`~gwcelery.conf.gcn_broker_queue_max_length` entries.
"""

import logging
import socket
import threading
import time

import lxml.etree
import redis
from celery.utils.log import get_task_logger
from gcn import NoticeType

from .. import app
from ..util import voevent_transport as vtp
from ..util.dispatch import DispatchTable
from ..util.eternal import (
    POLL_INTERVAL,
    Backoff,
    EternalTask,
    wait_unless_aborted,
)

__all__ = ('NoticeType', 'handler', 'listen', 'send', 'broker',
           'VOEventQueue')

log = get_task_logger(__name__)

#: Logger of the broker's connection threads (outside any task context).
connection_log = logging.getLogger(__name__ + '.broker')

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

class MalformedNotice(ValueError):
    """A VOEvent without a usable GCN notice type."""


def notice_type(root):
    """The GCN notice type (an int) of a parsed VOEvent: the value of its
    ``What/Param[@name="Packet_Type"]``."""
    param = root.find("./What/Param[@name='Packet_Type']")
    if param is None:
        raise MalformedNotice('no What/Param named Packet_Type')
    try:
        return int(param.get('value'))
    except (TypeError, ValueError):
        raise MalformedNotice(
            f'Packet_Type value {param.get("value")!r} is not an integer'
        ) from None


def dispatch_voevent(payload, root):
    """Hand a received VOEvent to the handlers of its notice type.

    Returns the group's result, or ``None`` when nothing handles it (an
    unknown type or a type without handler: logged at debug level). A
    VOEvent without a usable type is logged and skipped.
    """
    ivorn = root.get('ivorn')
    try:
        number = notice_type(root)
    except MalformedNotice as exc:
        log.warning('GCN: skipping VOEvent %s: %s', ivorn, exc)
        return None
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


def process_packet(payload, client_ivorn):
    """Act on one packet received from a VOEvent server.

    Parses it once; dispatches a VOEvent; returns the reply to send (an
    ``ack`` for a VOEvent, an ``iamalive`` for an ``iamalive``) or
    ``None``. Anything malformed is logged with the reason and skipped:
    this never raises for bad input.
    """
    try:
        root = vtp.parse(payload)
    except lxml.etree.XMLSyntaxError as exc:
        log.warning('GCN: skipping a packet that is not XML (%s): %s', exc,
                    vtp.describe(payload))
        return None
    kind = vtp.kind(root)
    if kind == 'iamalive':
        log.debug('GCN: iamalive from %s', vtp.origin(root))
        return vtp.transport_message('iamalive', vtp.origin(root) or '',
                                     client_ivorn)
    if kind == 'voevent':
        ivorn = root.get('ivorn')
        if not ivorn:
            log.warning('GCN: skipping a VOEvent without an ivorn: %s',
                        vtp.describe(payload))
            return None
        try:
            dispatch_voevent(payload, root)
        except Exception:
            log.exception('GCN: could not dispatch VOEvent %s (%s)', ivorn,
                          vtp.describe(payload))
        return vtp.transport_message('ack', ivorn, client_ivorn)
    if kind is None:
        log.warning('GCN: skipping an XML document with root <%s>: %s',
                    root.tag, vtp.describe(payload))
    else:
        log.info('GCN: Transport message of role %r from %s', kind,
                 vtp.origin(root))
    return None


def _receive(task, sock, backoff):
    """Read packets from a connected GCN server until the connection fails,
    stays silent too long, or the task is aborted."""
    conf = app.conf
    reader = vtp.PacketReader(sock, conf['gcn_max_packet_size'])
    last_packet = time.monotonic()
    while not task.is_aborted():
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
        reply = process_packet(payload, conf['gcn_listen_ivorn'])
        if reply is not None:
            vtp.send_packet(sock, reply)


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
    :obj:`~gwcelery.conf.gcn_listen_timeout` seconds.
    """
    conf = app.conf
    address = (conf['gcn_remote_address'], int(conf['gcn_remote_port']))
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    while not self.is_aborted():
        try:
            sock = socket.create_connection(address, timeout=10)
        except OSError as exc:
            delay = backoff.next()
            log.warning('GCN: cannot connect to %s:%d (%s); retrying in '
                        '%.0f s', *address, exc, delay)
            wait_unless_aborted(self, delay)
            continue
        log.info('GCN: connected to %s:%d', *address)
        try:
            with sock:
                _receive(self, sock, backoff)
        except (OSError, vtp.ProtocolError) as exc:
            log.warning('GCN: connection to %s:%d lost: %s', *address, exc)
        if not self.is_aborted():
            delay = backoff.next()
            log.info('GCN: reconnecting in %.0f s', delay)
            wait_unless_aborted(self, delay)
    log.info('GCN: listener stopped')


# --- sending ----------------------------------------------------------------

_ADVANCE_CURSOR = """
local old = redis.call('hget', KEYS[1], ARGV[1])
if old then
    local old_ms, old_seq = string.match(old, '^(%d+)-(%d+)$')
    local new_ms, new_seq = string.match(ARGV[2], '^(%d+)-(%d+)$')
    old_ms, old_seq = tonumber(old_ms), tonumber(old_seq)
    new_ms, new_seq = tonumber(new_ms), tonumber(new_seq)
    if new_ms < old_ms or (new_ms == old_ms and new_seq <= old_seq) then
        return 0
    end
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _id_key(entry_id):
    ms, _, seq = entry_id.partition('-')
    return int(ms), int(seq or 0)


class VOEventQueue:
    """The VOEvents queued for GCN: a Redis stream and per-address cursors
    (see the module docstring)."""

    def __init__(self, url=None, key=None):
        conf = app.conf
        self.redis = redis.Redis.from_url(
            url or conf.broker_url, decode_responses=False,
            socket_timeout=30, socket_connect_timeout=10)
        self.key = key or conf['gcn_broker_queue_key']
        self.cursors_key = self.key + ':cursors'
        self.max_length = int(conf['gcn_broker_queue_max_length'])
        self.max_age = float(conf['gcn_broker_queue_max_age'])

    def append(self, payload):
        """Queue a VOEvent (bytes); return its entry id."""
        entry_id = self.redis.xadd(self.key, {b'voevent': payload},
                                   maxlen=self.max_length,
                                   approximate=True)
        return entry_id.decode()

    def entries(self):
        """Every entry kept, oldest first: a list of ``(id, payload)``."""
        return [(entry_id.decode(), fields[b'voevent'])
                for entry_id, fields in self.redis.xrange(self.key)]

    def cursor(self, address):
        """Where a new connection from `address` starts: its cursor, or
        the oldest entry still young enough, whichever is later."""
        oldest = f'{int((time.time() - self.max_age) * 1000)}-0'
        saved = self.redis.hget(self.cursors_key, address)
        if saved is None:
            return oldest
        saved = saved.decode()
        return max(saved, oldest, key=_id_key)

    def acknowledge(self, address, entry_id):
        """Record that `address` has `entry_id` (never moves backwards)."""
        self.redis.eval(_ADVANCE_CURSOR, 1, self.cursors_key, address,
                        entry_id)

    def next_after(self, entry_id, block):
        """The first entry after `entry_id`, waiting up to `block` seconds
        for one: ``(id, payload)`` or ``None``."""
        reply = self.redis.xread({self.key: entry_id}, count=1,
                                 block=max(1, int(block * 1000)))
        if not reply:
            return None
        _, messages = reply[0]
        entry_id, fields = messages[0]
        return entry_id.decode(), fields[b'voevent']

    def close(self):
        self.redis.close()


@app.task(shared=False,
          autoretry_for=(redis.ConnectionError, redis.TimeoutError),
          retry_backoff=True, retry_backoff_max=60, max_retries=None)
def send(payload):
    """Queue a VOEvent (bytes) for :func:`broker` to send to GCN; return
    its entry id in the queue.

    Refuses (:exc:`ValueError`) a payload that is not a VOEvent with an
    IVORN, so that nothing malformed ever reaches GCN. Retries while the
    Redis server is unreachable.
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
    queue = VOEventQueue()
    try:
        entry_id = queue.append(payload)
    finally:
        queue.close()
    log.info('GCN: queued VOEvent %s for the broker (entry %s)',
             root.get('ivorn'), entry_id)
    return entry_id


class ClientGone(Exception):
    """A broker client must be disconnected (the reason is the message)."""


def allowed_addresses(names):
    """The IP addresses of the host names or addresses in `names`; a name
    that does not resolve is logged and left out."""
    addresses = set()
    for name in names:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            log.warning('GCN broker: cannot resolve allowed host %s: %s',
                        name, exc)
            continue
        addresses.update(info[4][0] for info in infos)
    return addresses


class _BrokerConnection(threading.Thread):
    """Serve one connected client: send it the queue, keep it alive."""

    def __init__(self, sock, address, stopping, queue_key=None):
        host, port = address[:2]
        super().__init__(name=f'gcn-broker {host}:{port}', daemon=True)
        conf = app.conf
        self.sock = sock
        self.host = host
        self.peer = f'{host}:{port}'
        self.stopping = stopping
        self.ivorn = conf['gcn_broker_ivorn']
        self.iamalive_interval = float(conf['gcn_broker_iamalive_interval'])
        self.reply_timeout = float(conf['gcn_broker_reply_timeout'])
        self.reader = vtp.PacketReader(sock, conf['gcn_max_packet_size'])
        self.queue = VOEventQueue(key=queue_key)
        self.sent = 0

    def run(self):
        try:
            self._serve()
        except ClientGone as exc:
            connection_log.warning('GCN broker: disconnecting %s: %s',
                                   self.peer, exc)
        except ConnectionError as exc:
            connection_log.info('GCN broker: %s: %s', self.peer, exc)
        except (OSError, vtp.ProtocolError, redis.RedisError) as exc:
            connection_log.warning('GCN broker: connection with %s failed: '
                                   '%s', self.peer, exc)
        finally:
            self.sock.close()
            self.queue.close()
            connection_log.info('GCN broker: %s disconnected after %d '
                                'VOEvent(s)', self.peer, self.sent)

    def _serve(self):
        cursor = self.queue.cursor(self.host)
        connection_log.info('GCN broker: %s connected; sending entries '
                            'after %s', self.peer, cursor)
        last_exchange = time.monotonic()
        while not self.stopping.is_set():
            # Unsolicited packets (a client's own iamalive), or EOF.
            self._handle_incoming(self.reader.read(0.01))
            entry = self.queue.next_after(cursor, POLL_INTERVAL)
            if entry is not None:
                entry_id, payload = entry
                self._send_voevent(entry_id, payload)
                cursor = entry_id
                last_exchange = time.monotonic()
            elif time.monotonic() - last_exchange > self.iamalive_interval:
                vtp.send_packet(self.sock, vtp.transport_message(
                    'iamalive', self.ivorn))
                self._await_reply('iamalive', None)
                last_exchange = time.monotonic()

    def _send_voevent(self, entry_id, payload):
        try:
            ivorn = vtp.parse(payload).get('ivorn')
        except lxml.etree.XMLSyntaxError as exc:
            # Not queued by send(), which checks: never send it.
            connection_log.error('GCN broker: skipping queue entry %s, '
                                 'which is not XML (%s)', entry_id, exc)
            self.queue.acknowledge(self.host, entry_id)
            return
        vtp.send_packet(self.sock, payload)
        self._await_reply('ack', ivorn)
        self.queue.acknowledge(self.host, entry_id)
        self.sent += 1
        connection_log.info('GCN broker: %s acknowledged %s', self.peer,
                            ivorn)

    def _await_reply(self, role, ivorn):
        """Read until the client replies with `role` (a ``nak`` also
        answers a VOEvent); answer the client's own iamalive meanwhile."""
        deadline = time.monotonic() + self.reply_timeout
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise ClientGone('the broker is stopping')
            root = self._handle_incoming(self.reader.read(POLL_INTERVAL))
            if root is None:
                continue
            kind = vtp.kind(root)
            if kind == role or (role == 'ack' and kind == 'nak'):
                if kind == 'nak':
                    connection_log.error('GCN broker: %s refused (nak) %s',
                                         self.peer, ivorn)
                return
        raise ClientGone(f'no {role} within {self.reply_timeout:.0f} s'
                         + (f' for {ivorn}' if ivorn else ''))

    def _handle_incoming(self, payload):
        """Parse a packet from the client; answer its iamalive; return the
        parsed message (``None`` if none or unparsable)."""
        if payload is None:
            return None
        try:
            root = vtp.parse(payload)
        except lxml.etree.XMLSyntaxError as exc:
            connection_log.warning(
                'GCN broker: %s sent a packet that is not XML (%s): %s',
                self.peer, exc, vtp.describe(payload))
            return None
        if vtp.kind(root) == 'iamalive' and vtp.origin(root) != self.ivorn:
            # The client's own keep-alive, not its answer to ours.
            vtp.send_packet(self.sock, vtp.transport_message(
                'iamalive', vtp.origin(root) or '', self.ivorn))
        return root


def _bind(task):
    """Listen on the broker's address, retrying while it is taken."""
    conf = app.conf
    address = (conf['gcn_bind_address'], int(conf['gcn_bind_port']))
    backoff = Backoff(conf['listener_reconnect_delay_min'],
                      conf['listener_reconnect_delay_max'])
    while not task.is_aborted():
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(address)
            server.listen(8)
        except OSError as exc:
            server.close()
            delay = backoff.next()
            log.error('GCN broker: cannot listen on %s:%d (%s); retrying '
                      'in %.0f s', *address, exc, delay)
            wait_unless_aborted(task, delay)
            continue
        server.settimeout(POLL_INTERVAL)
        log.info('GCN broker: listening on %s:%d', *address)
        return server
    return None


@app.task(base=EternalTask, bind=True, shared=False)
def broker(self):
    """Serve the queued VOEvents to GCN's receiver (eternal).

    A VOEvent Transport Protocol server on
    :obj:`~gwcelery.conf.gcn_bind_address`:
    :obj:`~gwcelery.conf.gcn_bind_port`. A connection from an address that
    is not one of :obj:`~gwcelery.conf.gcn_broker_accept_addresses` (host
    names are resolved at each connection) is closed at once. Each client
    gets every VOEvent queued by :func:`send`, in order (see the module
    docstring); the broker waits for its ``ack`` of each (or ``nak``, which
    is logged) up to :obj:`~gwcelery.conf.gcn_broker_reply_timeout`
    seconds, sends ``iamalive`` after
    :obj:`~gwcelery.conf.gcn_broker_iamalive_interval` seconds without
    traffic and expects one back, and answers the client's own
    ``iamalive``. A client that does not answer in time is disconnected;
    what it did not acknowledge is sent again when it reconnects.
    """
    server = _bind(self)
    if server is None:
        return
    serve_queue(server, self.is_aborted,
                app.conf['gcn_broker_accept_addresses'])


def serve_queue(server, should_stop, accept_addresses, queue_key=None):
    """Accept clients on the listening socket `server` and send each the
    VOEvents of a queue, until `should_stop()` is true.

    The loop of :func:`broker`, also used by the local deployment's mock
    GCN server with its own queue (`queue_key`). `server` must have a
    time-out so that `should_stop` is polled.
    """
    stopping = threading.Event()
    connections = []
    try:
        while not should_stop():
            connections = [c for c in connections if c.is_alive()]
            try:
                sock, address = server.accept()
            except TimeoutError:
                continue
            host = address[0]
            if host not in allowed_addresses(accept_addresses):
                log.warning('GCN broker: refused connection from %s:%d (not '
                            'in the allowed addresses)', *address[:2])
                sock.close()
                continue
            connection = _BrokerConnection(sock, address, stopping,
                                           queue_key)
            connection.start()
            connections.append(connection)
    finally:
        stopping.set()
        server.close()
        for connection in connections:
            connection.join(5)
        log.info('GCN broker: stopped')
