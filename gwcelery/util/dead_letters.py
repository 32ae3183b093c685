"""Dead letters: the messages that a listener could not decode or hand on
because of the message itself.

Every transport (the Redis alert stream, XMPP, igwn-alert and GCN over
Kafka, the GCN VOEvent connection, the milestones of ``gwcelery local``)
draws the same line around each message it receives:

* a failure to hand the message on because Redis or the Celery broker is
  down (:func:`is_broker_error`) is not the message's fault: the message is
  read again (or kept in memory, :class:`RetryQueue`) and retried;
* any other exception while decoding or dispatching it (not JSON, JSON
  nested deeper than the parser goes, a Kafka tombstone, bytes that are not
  UTF-8, a JSON list where an object is expected, a handler lookup that
  raises...) is the message's fault: :meth:`DeadLetters.reject` logs one
  line with the reason, keeps the message in a Redis list for inspection
  and the transport goes on with the next one (a Kafka offset is
  committed, a stream cursor moves on).

The list (:obj:`~gwcelery.conf.dead_letter_key`, in the broker's Redis)
holds JSON records, newest first: ``time`` (Unix), ``transport``,
``reason``, ``where`` (topic, partition and offset; node and entry or item
id; ...) and ``payload``: ``encoding`` (``'text'``, ``'base64'`` for bytes
that are not UTF-8, ``None`` for a message without value), ``data`` (at
most the first :data:`MAX_PAYLOAD` bytes), ``length`` (of the whole
message) and ``truncated``. It is trimmed to
:obj:`~gwcelery.conf.dead_letter_max_length` records; a second list
(``<key>:times``) holds their times, for ``gwcelery nagios``.
"""

import base64
import collections
import contextlib
import json
import logging
import os
import reprlib
import time

import kombu.exceptions
import redis

log = logging.getLogger(__name__)

#: Defaults of :obj:`~gwcelery.conf.dead_letter_key` and
#: :obj:`~gwcelery.conf.dead_letter_max_length`.
DEFAULT_KEY = 'gwcelery:dead-letters'
DEFAULT_MAX_LENGTH = 1000

#: Bytes of a message that its record keeps (64 kB).
MAX_PAYLOAD = 64 * 1024

#: Characters of a reason that its record keeps.
MAX_REASON = 500

#: Suffix of the list of the records' times.
TIMES_SUFFIX = ':times'

#: Failures to reach Redis or the Celery broker while handing a message on:
#: not the message's fault, so never dead-lettered but retried.
BROKER_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError,
                 ConnectionError)


class Rejected(Exception):
    """Raised by a decoder or a handler when the message itself is at
    fault: the transport dead-letters it. Its text names the message and
    what is wrong with it (``'a message that is not JSON (...)'``), for
    the log line "skipping ..."."""


def is_broker_error(error):
    """Whether `error` means that Redis or the Celery broker is down: one of
    :data:`BROKER_ERRORS`, or an exception raised from one (Celery raises
    :exc:`RuntimeError` from a lost connection to the result backend)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BROKER_ERRORS):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _origin(traceback):
    """``file:line in function`` of the innermost frame of `traceback`."""
    if traceback is None:
        return None
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    code = traceback.tb_frame.f_code
    return (f'{os.path.basename(code.co_filename)}:{traceback.tb_lineno} '
            f'in {code.co_name}')


def _one_line(text):
    """`text` on one line of at most :data:`MAX_REASON` characters."""
    text = ' '.join(text[:2 * MAX_REASON].split())
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 3] + '...'
    return text


def reason_of(error):
    """An exception in one short line: its type, text and where it was
    raised (no traceback: that of a deep recursion is thousands of
    frames)."""
    try:
        text = f'{type(error).__name__}: {error}'
    except Exception:  # an exception that cannot say what it is
        text = f'{type(error).__name__} (unprintable)'
    origin = _origin(error.__traceback__)
    if origin:
        text += f' (at {origin})'
    return _one_line(text)


def fault_of(error):
    """What was wrong with a rejected message, as a noun phrase (the log
    says "skipping" it): the text of a :exc:`Rejected` or a string (e.g.
    ``'a packet that is not XML (...)'``), else ``'a message that raised
    '`` and the exception."""
    if isinstance(error, (str, Rejected)):
        return _one_line(str(error))
    return _one_line(f'a message that raised {reason_of(error)}')


def _bytes_of(payload):
    """The bytes of a message: as received, UTF-8 of a text, or a bounded
    representation of anything else."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if not isinstance(payload, str):
        payload = reprlib.repr(payload)  # bounded, even for deep objects
    return payload.encode('utf-8', 'surrogatepass')


def _text_of(head, truncated):
    """`head` decoded as UTF-8, or ``None`` if it is not UTF-8."""
    try:
        return head.decode()
    except UnicodeDecodeError as exc:
        # The limit cut through the last character: no reason for base64.
        if truncated and exc.end == len(head) and exc.start > len(head) - 4:
            return _text_of(head[:exc.start], truncated=False)
        return None


def payload_record(payload, limit=MAX_PAYLOAD):
    """The JSON form of a message: its first `limit` bytes as text if they
    are UTF-8, else as base64, with the length of the whole."""
    if payload is None:  # e.g. a Kafka tombstone
        return {'encoding': None, 'data': None, 'length': 0,
                'truncated': False}
    data = _bytes_of(payload)
    head = data[:limit]
    text = _text_of(head, truncated=len(data) > limit)
    if text is None:
        encoding, text = 'base64', base64.b64encode(head).decode('ascii')
    else:
        encoding = 'text'
    return {'encoding': encoding, 'data': text, 'length': len(data),
            'truncated': len(data) > limit}


def make_record(transport, reason, payload, where, now=None):
    """The record of one dead letter (a dict; see the module docstring);
    `reason` is an exception or a string (see :func:`fault_of`)."""
    return {'time': time.time() if now is None else now,
            'transport': transport, 'reason': fault_of(reason),
            'where': where, 'payload': payload_record(payload)}


def _scalar(value):
    """JSON-able form of a ``where`` value (e.g. a Redis channel's bytes)."""
    if isinstance(value, bytes):
        return value.decode(errors='replace')
    return str(value)


def _connect(url):
    # Short time-outs: a Redis that is down must not hold up a transport.
    return redis.Redis.from_url(url, socket_connect_timeout=2,
                                socket_timeout=5)


@contextlib.contextmanager
def _opened(client_or_url):
    """A client for `client_or_url`, closed afterwards if opened here."""
    if not isinstance(client_or_url, str):
        yield client_or_url
        return
    client = _connect(client_or_url)
    try:
        yield client
    finally:
        client.close()


def push(client_or_url, record, key=DEFAULT_KEY,
         max_length=DEFAULT_MAX_LENGTH):
    """LPUSH a record and its time onto the lists, trimmed to
    `max_length`, in one transaction; raise :exc:`redis.RedisError`."""
    text = json.dumps(record, default=_scalar)
    with _opened(client_or_url) as client:
        with client.pipeline(transaction=True) as pipe:
            pipe.lpush(key, text)
            pipe.ltrim(key, 0, max_length - 1)
            pipe.lpush(key + TIMES_SUFFIX, record['time'])
            pipe.ltrim(key + TIMES_SUFFIX, 0, max_length - 1)
            pipe.execute()


def _skipping(entry):
    """The start of the log line of a rejected message: the transport,
    what was wrong, where the message was and its size."""
    where = ', '.join(f'{name} {_scalar(value)}'
                      for name, value in entry['where'].items())
    return (f'{entry["transport"]}: skipping {entry["reason"]} '
            f'({where or "no position"}; {entry["payload"]["length"]} '
            f'bytes)')


def _keep(client_or_url, entry, key, max_length):
    """Push a record; if Redis fails, log it whole (with the start of
    the message) at ERROR instead. Return whether it was kept."""
    try:
        push(client_or_url, entry, key, max_length)
    except (redis.RedisError, OSError) as exc:
        payload = entry['payload']
        log.error('%s; not kept as a dead letter, Redis failed (%s); the '
                  'message (%s) began %r', _skipping(entry), exc,
                  payload['encoding'], (payload['data'] or '')[:200])
        return False
    return True


def record(client_or_url, transport, reason, payload, *, key=DEFAULT_KEY,
           max_length=DEFAULT_MAX_LENGTH, **where):
    """Keep a message that `transport` rejected for `reason` (a string or
    an exception) in the dead-letter list of a Redis server (a client or
    a URL); `where` says where it was (topic, partition, offset...).

    Returns whether it was kept. If Redis is down, logs the record at
    ERROR and returns False: the transport must go on regardless.
    """
    entry = make_record(transport, reason, payload, where)
    return _keep(client_or_url, entry, key, max_length)


def read(client_or_url, n=10, key=DEFAULT_KEY):
    """The `n` newest dead letters (decoded records), newest first."""
    with _opened(client_or_url) as client:
        return [json.loads(item) for item in client.lrange(key, 0, n - 1)]


def count(client_or_url, key=DEFAULT_KEY):
    """How many dead letters the list keeps."""
    with _opened(client_or_url) as client:
        return client.llen(key)


def summary(client_or_url, since, key=DEFAULT_KEY):
    """``(kept, recent, newest)``: how many dead letters the list keeps,
    how many of them are no older than `since` (a Unix time), and the
    newest record (or ``None``). Deleting the list forgets them all."""
    with _opened(client_or_url) as client:
        with client.pipeline(transaction=True) as pipe:
            pipe.llen(key)
            pipe.lrange(key + TIMES_SUFFIX, 0, -1)
            pipe.lindex(key, 0)
            kept, times, newest = pipe.execute()
    # The times list may hold those of records deleted since: only the
    # first `kept` go with the records that are left.
    recent = sum(float(when) >= since for when in times[:kept])
    return kept, recent, json.loads(newest) if newest else None


class DeadLetters:
    """The dead-letter list that one transport writes to.

    Parameters
    ----------
    client_or_url : redis.Redis, str or None
        The Redis server (a client, or a URL: connected lazily, with short
        time-outs); ``None`` keeps nothing and only logs.
    key, max_length
        See :obj:`~gwcelery.conf.dead_letter_key` and
        :obj:`~gwcelery.conf.dead_letter_max_length`.
    """

    def __init__(self, client_or_url, key=DEFAULT_KEY,
                 max_length=DEFAULT_MAX_LENGTH):
        self._owned = isinstance(client_or_url, str)
        self.client = (_connect(client_or_url) if self._owned
                       else client_or_url)
        self.key = key
        self.max_length = int(max_length)

    @classmethod
    def from_conf(cls, conf, url=None):
        """The list of the app's configuration, in `url`'s Redis (default:
        the broker's)."""
        return cls(url or conf.broker_url, conf['dead_letter_key'],
                   conf['dead_letter_max_length'])

    def reject(self, transport, error, payload, **where):
        """The message is at fault: keep it and log one line saying what
        was wrong (`error`: an exception, or a :exc:`Rejected` or string
        naming the message, see :func:`fault_of`), at ERROR if Redis could
        not keep it; return whether it was kept."""
        entry = make_record(transport, error, payload, where)
        kept = self.client is not None and _keep(
            self.client, entry, self.key, self.max_length)
        if kept:
            log.warning('%s; kept as a dead letter', _skipping(entry))
        elif self.client is None:
            log.warning('%s', _skipping(entry))
        return kept

    def close(self):
        """Disconnect, if connected here."""
        if self._owned:
            self.client.close()


class RetryQueue:
    """Messages that wait, in order, until the Celery broker is back.

    For the transports that cannot read a message again (XMPP, the GCN
    VOEvent connection). :meth:`put` hands a message on at once, unless
    older ones wait; :meth:`flush`, called at each turn of the transport's
    loop, tries the waiting ones again once the delay (doubling with each
    failure, from `backoff`) is over. A message that fails for any other
    reason than :func:`is_broker_error` is rejected to `letters`.
    """

    def __init__(self, letters, transport, backoff):
        self.letters = letters
        self.transport = transport
        self.backoff = backoff
        self.waiting = collections.deque()
        self.retry_at = 0.0

    def __len__(self):
        return len(self.waiting)

    def put(self, payload, hand_on, **where):
        """Queue ``hand_on()``, which hands `payload` on; call it now if
        nothing waits."""
        self.waiting.append((payload, hand_on, where))
        if len(self.waiting) == 1:
            self.flush()

    def flush(self):
        """Hand the waiting messages on, in order, if their delay is over;
        stop at the first that meets a broker error."""
        if time.monotonic() < self.retry_at:
            return
        while self.waiting:
            payload, hand_on, where = self.waiting[0]
            try:
                hand_on()
            except Exception as exc:
                if is_broker_error(exc):
                    self._wait(exc)
                    return
                self.letters.reject(self.transport, exc, payload, **where)
            self.waiting.popleft()
            self.backoff.reset()

    def _wait(self, error):
        delay = self.backoff.next()
        self.retry_at = time.monotonic() + delay
        log.warning('%s: could not hand a message on (%s); %d waiting, '
                    'trying again in %.0f s', self.transport,
                    reason_of(error), len(self.waiting), delay)
