"""A VOEvent server: a Redis-backed queue of VOEvents and the threads that
send it to connected clients over the VOEvent Transport Protocol
(:mod:`gwcelery.util.voevent_transport`).

The pipeline's broker (:func:`gwcelery.tasks.gcn.broker`, which GCN's
receiver connects to), the mock GCN server of the local deployment
(``gwcelery mock-gcn-server``) and the eager ``gwcelery local`` all run
:func:`serve_queue`. Nothing here imports the Celery application or a task
module: the callers pass the application's settings (``app.conf``), read
when a queue is opened or a client connects.

The queue (:class:`VOEventQueue`) is a Redis *stream* (key
:obj:`~gwcelery.conf.gcn_broker_queue_key` by default): an append-only log
whose entries have increasing ids, plus a hash of *cursors*, one per
client address: the id of the last entry that a client from that address
acknowledged. A client that connects is sent the entries after its
address's cursor (or, for an address never seen, every entry kept, which
is at most :obj:`~gwcelery.conf.gcn_broker_queue_max_age` seconds old),
then each new one as it is queued. The server sends one VOEvent at a time
and moves the cursor only when the client has acknowledged it, so

* a VOEvent queued while no client is connected, or while the server is
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

from . import voevent_transport as vtp
from .eternal import POLL_INTERVAL

__all__ = ('VOEventQueue', 'allowed_addresses', 'open_server',
           'serve_queue')

log = logging.getLogger(__name__)

# Moves a client's cursor to an entry id only if that id is later: two
# connections from one address may acknowledge out of order.
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
    """The VOEvents queued for sending: a Redis stream and per-address
    cursors (see the module docstring).

    Parameters
    ----------
    conf : celery.app.utils.Settings
        The application's settings (``app.conf``): its ``broker_url`` (the
        Redis server; ``CELERY_BROKER_URL`` in the environment wins, as
        for Celery itself) and the ``gcn_broker_queue_*`` settings.
    key : str or None
        The stream's key; by default
        :obj:`~gwcelery.conf.gcn_broker_queue_key`.
    """

    def __init__(self, conf, key=None):
        self.redis = redis.Redis.from_url(
            conf.broker_url, decode_responses=False,
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
        """Close the connection to Redis."""
        self.redis.close()


class ClientGone(Exception):
    """A client must be disconnected (the reason is the message)."""


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


class _Connection(threading.Thread):
    """Serve one connected client: send it the queue, keep it alive."""

    def __init__(self, sock, address, stopping, conf, queue_key=None):
        host, port = address[:2]
        super().__init__(name=f'gcn-broker {host}:{port}', daemon=True)
        self.sock = sock
        self.host = host
        self.peer = f'{host}:{port}'
        self.stopping = stopping
        self.ivorn = conf['gcn_broker_ivorn']
        self.iamalive_interval = float(conf['gcn_broker_iamalive_interval'])
        self.reply_timeout = float(conf['gcn_broker_reply_timeout'])
        self.reader = vtp.PacketReader(sock, conf['gcn_max_packet_size'])
        self.queue = VOEventQueue(conf, key=queue_key)
        self.sent = 0

    def run(self):
        try:
            self._serve()
        except ClientGone as exc:
            log.warning('GCN broker: disconnecting %s: %s', self.peer, exc)
        except ConnectionError as exc:
            log.info('GCN broker: %s: %s', self.peer, exc)
        except (OSError, vtp.ProtocolError, redis.RedisError) as exc:
            log.warning('GCN broker: connection with %s failed: %s',
                        self.peer, exc)
        finally:
            self.sock.close()
            self.queue.close()
            log.info('GCN broker: %s disconnected after %d VOEvent(s)',
                     self.peer, self.sent)

    def _serve(self):
        cursor = self.queue.cursor(self.host)
        log.info('GCN broker: %s connected; sending entries after %s',
                 self.peer, cursor)
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
            # Not queued by gcn.send, which checks: never send it.
            log.error('GCN broker: skipping queue entry %s, which is not '
                      'XML (%s)', entry_id, exc)
            self.queue.acknowledge(self.host, entry_id)
            return
        vtp.send_packet(self.sock, payload)
        self._await_reply('ack', ivorn)
        self.queue.acknowledge(self.host, entry_id)
        self.sent += 1
        log.info('GCN broker: %s acknowledged %s', self.peer, ivorn)

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
                    log.error('GCN broker: %s refused (nak) %s', self.peer,
                              ivorn)
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
            log.warning('GCN broker: %s sent a packet that is not XML (%s): '
                        '%s', self.peer, exc, vtp.describe(payload))
            return None
        if vtp.kind(root) == 'iamalive' and vtp.origin(root) != self.ivorn:
            # The client's own keep-alive, not its answer to ours.
            vtp.send_packet(self.sock, vtp.transport_message(
                'iamalive', vtp.origin(root) or '', self.ivorn))
        return root


def open_server(address):
    """A socket listening on `address` (``(host, port)``), ready for
    :func:`serve_queue`: its accept times out every
    :data:`~gwcelery.util.eternal.POLL_INTERVAL` seconds. Raises
    :exc:`OSError` if the address is taken."""
    server = socket.create_server(address, backlog=8)
    server.settimeout(POLL_INTERVAL)
    return server


def serve_queue(server, should_stop, accept_addresses, conf,
                queue_key=None):
    """Accept clients on the listening socket `server` and send each the
    VOEvents of a queue, until `should_stop()` is true.

    A connection from an address that is not one of `accept_addresses`
    (host names, resolved at each connection) is closed at once. Each
    client gets every VOEvent of the queue `queue_key` (by default
    :obj:`~gwcelery.conf.gcn_broker_queue_key`) in order (see the module
    docstring); the server waits for its ``ack`` of each (or ``nak``,
    which is logged) up to :obj:`~gwcelery.conf.gcn_broker_reply_timeout`
    seconds, sends ``iamalive`` after
    :obj:`~gwcelery.conf.gcn_broker_iamalive_interval` seconds without
    traffic and expects one back, and answers the client's own
    ``iamalive``. A client that does not answer in time is disconnected.
    `conf` holds the settings (e.g. ``app.conf``). `server` must have a
    time-out (see :func:`open_server`) so that `should_stop` is polled; it
    is closed on return.
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
            if address[0] not in allowed_addresses(accept_addresses):
                log.warning('GCN broker: refused connection from %s:%d (not '
                            'in the allowed addresses)', *address[:2])
                sock.close()
                continue
            connection = _Connection(sock, address, stopping, conf,
                                     queue_key)
            connection.start()
            connections.append(connection)
    finally:
        stopping.set()
        server.close()
        for connection in connections:
            connection.join(5)
        log.info('GCN broker: stopped')
