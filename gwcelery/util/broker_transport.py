"""kombu's Redis transport, made to ride out a restart of Redis.

When the broker connection breaks, a Celery worker closes it and opens a
new one, but the tasks that were running go on and acknowledge their
messages when they end, through the channel of the closed connection.
kombu's Redis channel then builds a new connection pool from its
connection's settings, which a closed connection no longer has: the
acknowledgement raises ``AttributeError: 'NoneType' object has no
attribute 'hostname'``, and the worker exits with an unrecoverable error.

With Redis, a delivery tag is not tied to a channel: the ``unacked``
hash is the same for every connection. :class:`Channel` therefore keeps
the connection settings it was opened with, and acknowledges (or gives
back) a message of a closed connection through a new connection with
those settings.

Second, kombu takes a message with ``BRPOP``, which removes it from its
queue; the message is recorded as taken (in ``unacked``, where a lease
keeps it, :mod:`gwcelery.util.broker_lease`) only once the worker has
read the answer. A worker frozen or cut off from the network while its
``BRPOP`` waited lost the message that Redis then gave it: it was in no
queue and not in ``unacked``. :class:`Channel` therefore waits with
``BRPOP`` on a list of wake-up tokens (``wake:QUEUE``, one pushed with
every message) and takes the message itself with one Lua script that
moves it from its queue into ``unacked`` at once (:data:`TAKE`): if the
answer is lost, the message is already leased, and its lease lapses. A
message without a token (sent by another client) is taken at the next
turn, within ``brpop_timeout`` (a second).

:func:`install` makes it the transport of ``redis://`` URLs in this
process.
"""

from queue import Empty
from time import monotonic, time

from kombu import transport
from kombu.exceptions import ChannelError
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

#: The alias under which :class:`Transport` replaces kombu's own.
SCHEMES = ('redis', 'rediss')

#: Prefix of the lists of wake-up tokens, one list per queue.
WAKE_PREFIX = 'wake:'

#: Tokens kept per queue: enough to wake every consumer of a burst.
WAKE_MAX_LENGTH = 1000

#: Lua: take the first message of the lists ``KEYS[3:]`` (a queue's
#: priority lists, highest first) and record it as taken, in one step:
#: ``unacked`` (``KEYS[1]``) gets what kombu writes there (the message,
#: its exchange and routing key, as JSON), ``unacked_index``
#: (``KEYS[2]``) the time ``ARGV[1]``. Returns the list and the message.
TAKE = """
for i = 3, #KEYS do
    local item = redis.call('RPOP', KEYS[i])
    if item then
        local message = cjson.decode(item)
        local properties = message['properties']
        local info = properties['delivery_info']
        local tag = properties['delivery_tag']
        redis.call('HSET', KEYS[1], tag, '[' .. item .. ',' ..
                   cjson.encode(info['exchange']) .. ',' ..
                   cjson.encode(info['routing_key']) .. ']')
        redis.call('ZADD', KEYS[2], ARGV[1], tag)
        return {KEYS[i], item}
    end
end
return false
"""


class Channel(kombu_redis.Channel):
    """A Redis channel that can still reach Redis after its connection
    was closed (see the module docstring)."""

    _saved_connparams = None
    _brpop_queues = ()
    _take_script = None

    def _connparams(self, asynchronous=False):
        saved = self._saved_connparams
        if self.connection.client is None and saved:
            return dict(saved.get(asynchronous) or next(iter(saved.values())))
        params = super()._connparams(asynchronous=asynchronous)
        self._saved_connparams = {**(saved or {}), asynchronous: dict(params)}
        return params

    def _wake_key(self, queue):
        return WAKE_PREFIX + queue

    def _brpop_start(self, timeout=None):
        """Wait for a wake-up token of the consumed queues (see the module
        docstring), not for a message."""
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._brpop_queues = queues
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command(
            'BRPOP', *map(self._wake_key, queues),
            timeout or self.brpop_timeout or 0)

    def _brpop_read(self, **options):
        """Read the wake-up (or the time-out), then take a message."""
        try:
            try:
                self.client.parse_response(self.client.connection, 'BRPOP',
                                           **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            taken = self._take(self._brpop_queues)
            if taken is None:
                raise Empty()
            queue, message = taken
            self._queue_cycle.rotate(queue)
            self.connection._deliver(message, queue)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _take(self, queues):
        """Take the first message of `queues` (:data:`TAKE`); return its
        queue and the message, or None."""
        keys = [self._q_for_pri(queue, priority)
                for priority in self.priority_steps for queue in queues]
        with self.conn_or_acquire() as client:
            if self._take_script is None:
                self._take_script = client.register_script(TAKE)
            taken = self._take_script(
                keys=[self.unacked_key, self.unacked_index_key, *keys],
                args=[time()], client=client)
        if not taken:
            return None
        key, item = (bytes_to_str(part) for part in taken)
        return key.rsplit(self.sep, 1)[0], loads(item)

    def _get(self, queue):
        taken = self._take([queue])
        if taken is None:
            raise Empty()
        return taken[1]

    def _put(self, queue, message, **kwargs):
        batch = kwargs.get('_publish_batch')
        super()._put(queue, message, **kwargs)
        self._wake(queue, batch)

    def _wake(self, queue, batch=None):
        """Push a wake-up token for a message put in `queue`."""
        key = self._wake_key(queue)
        if batch is not None:
            batch.add('lpush', key, 1)
            batch.add('ltrim', key, 0, WAKE_MAX_LENGTH - 1)
            return
        with self.conn_or_acquire() as client:
            client.pipeline(transaction=False).lpush(key, 1).ltrim(
                key, 0, WAKE_MAX_LENGTH - 1).execute()

    def _do_restore_message(self, payload, exchange, routing_key,
                            pipe, leftmost=False):
        super()._do_restore_message(payload, exchange, routing_key, pipe,
                                    leftmost)
        try:
            queues = self._lookup(exchange, routing_key)
        except ChannelError:
            return
        for queue in queues:
            pipe.lpush(self._wake_key(queue), 1)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install():
    """Use :class:`Transport` for the ``redis://`` broker URLs of every
    connection that this process opens from now on."""
    path = f'{__name__}:Transport'
    for scheme in SCHEMES:
        transport.TRANSPORT_ALIASES[scheme] = path
