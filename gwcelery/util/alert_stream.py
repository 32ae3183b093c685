"""The local LVAlert transport: a Redis stream that keeps every alert until
the listener has handled it.

The GraceDB server appends each alert to the stream ``prefix + 'stream'``
(fields ``node`` and ``message``, the JSON text) and, in the same
transaction, publishes it on the pub/sub channel ``prefix + node``. The
stream is what the listener consumes: it reads from its cursor (the id of
the last entry it handled, kept in Redis under ``prefix +
'stream:cursor'``) and moves the cursor only after handing an entry to its
handlers, so an alert published while the listener is down or restarting
is handled when it comes back, and one being handled when it died is
handled again (at least once; the handlers are idempotent). The pub/sub
copy is for observers (the milestones report, tests); the listener also
stays subscribed to its channels, which wakes it up at once and shows
that it is connected (``PUBSUB NUMSUB``).

The stream keeps about ``max_length`` entries; a listener that has no
cursor yet starts at the entries younger than ``max_age`` seconds.

An entry that cannot be handed on because of the entry itself (not JSON,
nested too deep, a JSON list, no ``message`` field...) is dead-lettered
(:mod:`gwcelery.util.dead_letters`) and the cursor moves past it; one
that meets a failure of Redis or of the Celery broker is read again after
reconnecting.

:func:`listen` is the listener's side (the ``'redis'`` transport of
:mod:`gwcelery.tasks.lvalert`).
"""

import logging
import time

import kombu.exceptions
import redis

from . import dead_letters
from .eternal import POLL_INTERVAL, Backoff, wait_unless_aborted

log = logging.getLogger(__name__)

#: Name of the stream and of the cursor, after the prefix.
STREAM_SUFFIX = 'stream'
CURSOR_SUFFIX = 'stream:cursor'

#: Seconds to wait for the rest of a pub/sub message once it has begun to
#: arrive.
REST_OF_MESSAGE_TIMEOUT = 10


class AlertStream:
    """The alert stream of one Redis server and prefix.

    Parameters
    ----------
    client : redis.Redis
        A connection to the Redis server.
    prefix : str
        Prefix of the stream, cursor and channel names (``lvalert:``).
    max_length : int
        About how many entries the stream keeps.
    """

    def __init__(self, client, prefix='lvalert:', max_length=100000):
        self.client = client
        self.prefix = prefix
        self.key = prefix + STREAM_SUFFIX
        self.cursor_key = prefix + CURSOR_SUFFIX
        self.max_length = int(max_length)

    def append_many(self, items):
        """Append ``(node, message)`` pairs to the stream and publish each
        on its channel, all in one transaction; return the entry ids."""
        pipeline = self.client.pipeline(transaction=True)
        for node, message in items:
            pipeline.xadd(self.key, {'node': node, 'message': message},
                          maxlen=self.max_length, approximate=True)
            pipeline.publish(self.prefix + node, message)
        replies = pipeline.execute()
        return [_text(entry_id) for entry_id in replies[::2]]

    def cursor(self, max_age):
        """Where the listener resumes: after its saved cursor, or (the
        first time) at the oldest entry younger than ``max_age`` s."""
        saved = self.client.get(self.cursor_key)
        if saved is not None:
            return _text(saved)
        return f'{int((time.time() - max_age) * 1000)}-0'

    def save_cursor(self, entry_id):
        """Record that every entry up to ``entry_id`` was handled."""
        self.client.set(self.cursor_key, entry_id)

    def read_after(self, entry_id, count=100):
        """The entries after ``entry_id`` (without waiting): a list of
        ``(id, node, message)``; an entry without these fields has
        ``None`` for them."""
        reply = self.client.xread({self.key: entry_id}, count=count)
        if not reply:
            return []
        _, entries = reply[0]
        return [(_text(entry_id), _text(fields.get(b'node')),
                 fields.get(b'message'))
                for entry_id, fields in entries]


def next_published(pubsub, timeout):
    """The next message of `pubsub` (a subscribed redis-py ``PubSub``), or
    ``None`` if none begins to arrive within `timeout` seconds.

    A message that has begun to arrive is read whole, waiting up to
    :data:`REST_OF_MESSAGE_TIMEOUT` for its rest: redis-py 8 reads it with
    the caller's time-out as the socket's, so a plain ``get_message(
    timeout=0)`` on a message larger than a TCP segment that has only
    partly arrived fails with a time-out and reconnects, dropping it.
    """
    connection = pubsub.connection
    try:
        if connection is None or not connection.can_read(timeout):
            return None
    except redis.ConnectionError:
        # Drop the dead socket: the next call reconnects and subscribes
        # again (can_read alone would fail on it for ever).
        connection.disconnect()
        raise
    return pubsub.get_message(timeout=REST_OF_MESSAGE_TIMEOUT)


def _text(value):
    """`value` as text; bytes that are not UTF-8 (a hostile node name)
    with replacement characters, so that they cannot stop the stream."""
    if isinstance(value, bytes):
        return value.decode(errors='replace')
    return value


#: Failures to reach Redis or the Celery broker while handing an entry on:
#: the entry stays unread, and is read again after reconnecting.
BROKER_ERRORS = dead_letters.BROKER_ERRORS

#: Name of the transport in the log and the dead letters.
TRANSPORT = 'LVAlert'


def _hand_on(node, entry_id, message, process_message, letters):
    """Hand one entry on; dead-letter it if it is at fault. Raise
    :data:`BROKER_ERRORS` (the entry is read again after reconnecting)."""
    if message is None:
        letters.reject(TRANSPORT, 'a stream entry without a message field',
                       None, node=node, stream_entry=entry_id)
        return
    try:
        process_message(node, message)
    except BROKER_ERRORS:
        raise
    except Exception as exc:
        if dead_letters.is_broker_error(exc):
            # e.g. Celery's RuntimeError from a lost result backend.
            raise kombu.exceptions.OperationalError(
                dead_letters.reason_of(exc)) from exc
        # The entry would come back forever and stop the stream behind it.
        letters.reject(TRANSPORT, exc, message, node=node,
                       stream_entry=entry_id)


def _handle_entries(stream, entries, channels, process_message, letters):
    """Hand each stream entry of a handled node to its handlers, moving
    the cursor past it once it is handed on (at least once) or
    dead-lettered."""
    for entry_id, node, message in entries:
        if node in channels.values():
            _hand_on(node, entry_id, message, process_message, letters)
        stream.save_cursor(entry_id)


def _drain(pubsub, timeout):
    """Wait up to ``timeout`` s for a wake-up on the channels; take every
    pending one (their contents are in the stream)."""
    message = next_published(pubsub, timeout)
    while message is not None:
        message = next_published(pubsub, 0)


def listen(task, conf, nodes, process_message):
    """Hand each new entry of the stream on one of `nodes` to
    ``process_message(node, text)``, which raises :data:`BROKER_ERRORS`
    when it could not hand it on, until `task` is aborted; `conf` is the
    app's configuration. Reconnects with a doubling delay after a failure
    of Redis (the entry is then read again); any other exception of
    ``process_message`` dead-letters the entry."""
    letters = dead_letters.DeadLetters.from_conf(conf)
    try:
        _listen(task, conf, nodes, process_message, letters)
    finally:
        letters.close()


def _listen(task, conf, nodes, process_message, letters):
    """The loop of :func:`listen`: connect, read, reconnect."""
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
                    _handle_entries(stream, entries, channels,
                                    process_message, letters)
                    cursor = entries[-1][0]
                else:
                    _drain(pubsub, POLL_INTERVAL)
        except BROKER_ERRORS as exc:
            delay = backoff.next()
            log.warning('LVAlert: Redis at %s failed (%s); reconnecting in '
                        '%.0f s', url, exc, delay)
            wait_unless_aborted(task, delay)
        finally:
            pubsub.close()
            client.close()
