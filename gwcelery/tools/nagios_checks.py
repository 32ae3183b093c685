"""The checks of ``gwcelery nagios``: each a function of what it checks
and a time-out, returning a :class:`Result` (a Nagios state, a one-line
message, performance data)."""

import enum
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import redis
from kombu.exceptions import OperationalError
from kombu.transport.redis import PRIORITY_STEPS, Channel
from kombu.utils.url import maybe_sanitize_url

from ..util import dead_letters
from ..util.eternal import read_heartbeat
from ..util.voevent_broker import allowed_addresses


class State(enum.IntEnum):
    """Nagios plugin states; the value is the exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self):
        """Rank when combining: a known problem outranks an unknown one,
        so that a check that could not run never hides a CRITICAL."""
        return (State.OK, State.UNKNOWN, State.WARNING,
                State.CRITICAL).index(self)


@dataclass(frozen=True)
class Result:
    """What one check found: a state, a one-line message (naming what was
    checked), Nagios performance data items (``label=value;warn;crit;min``)
    and whether the check was skipped because something it needs is down.
    """

    state: State
    message: str
    perfdata: tuple = ()
    skipped: bool = False


def worst(states):
    """The most severe of `states` (OK if there is none)."""
    return max(states, key=lambda state: state.severity, default=State.OK)


def _redis(url, timeout, **kwargs):
    return redis.Redis.from_url(url, socket_timeout=timeout,
                                socket_connect_timeout=timeout, **kwargs)


def check_broker(url, timeout):
    """Whether the Redis broker at `url` answers a PING."""
    shown = maybe_sanitize_url(url)
    client = _redis(url, timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Result(State.CRITICAL,
                      f'broker {shown} not answering ({exc})')
    finally:
        client.close()
    return Result(State.OK, f'broker {shown} answers')


def check_workers(app, queues, timeout):
    """Whether each of `queues` has a live worker consuming it (Celery's
    ``active_queues`` inspect; a worker that does not answer within
    `timeout` seconds counts as dead)."""
    options = {'socket_timeout': timeout, 'socket_connect_timeout': timeout}
    try:
        with app.connection_for_write(connect_timeout=timeout,
                                      transport_options=options) as conn:
            conn.connect()
            replies = app.control.inspect(
                timeout=timeout, connection=conn).active_queues() or {}
    except (OSError, OperationalError, redis.RedisError) as exc:
        return Result(State.CRITICAL, f'cannot ask the workers ({exc})')
    consumed = {queue['name'] for worker_queues in replies.values()
                for queue in worker_queues}
    missing = [queue for queue in queues if queue not in consumed]
    if missing:
        answering = ', '.join(sorted(replies)) or 'none'
        return Result(State.CRITICAL,
                      f'no worker consumes queue {", ".join(missing)} '
                      f'(workers answering: {answering})')
    return Result(State.OK, f'{len(queues)} queues consumed by '
                            f'{", ".join(sorted(replies))}')


def queue_keys(queue, transport_options):
    """The Redis lists of a queue under kombu's Redis transport: the queue's
    own name for priority 0 and one sub-list per other priority step."""
    separator = transport_options.get('sep', Channel.sep)
    steps = transport_options.get('priority_steps', PRIORITY_STEPS)
    prefix = transport_options.get('global_keyprefix', '')
    return [prefix + (f'{queue}{separator}{step}' if step else queue)
            for step in steps]


def check_queue_lengths(url, queues, transport_options, warning, critical,
                        timeout):
    """Whether any of `queues` holds more than `warning` (WARNING) or
    `critical` (CRITICAL) waiting messages in the Redis broker at `url`."""
    client = _redis(url, timeout)
    try:
        with client.pipeline() as pipe:
            for queue in queues:
                for key in queue_keys(queue, transport_options):
                    pipe.llen(key)
            sizes = iter(pipe.execute())
    except redis.RedisError as exc:
        return Result(State.CRITICAL,
                      f'cannot read the queue lengths ({exc})')
    finally:
        client.close()
    steps = len(queue_keys('', transport_options))
    lengths = {queue: sum(next(sizes) for _ in range(steps))
               for queue in queues}
    perfdata = tuple(f'queue_{queue}={length};{warning};{critical};0'
                     for queue, length in lengths.items())
    for state, limit in ((State.CRITICAL, critical),
                         (State.WARNING, warning)):
        long_ones = [f'{queue} holds {length}' for queue, length
                     in lengths.items() if length > limit]
        if long_ones:
            return Result(state, f'queue {", ".join(long_ones)} messages '
                                 f'(limit {limit})', perfdata)
    return Result(State.OK, 'queue lengths ' + ', '.join(
        f'{queue} {length}' for queue, length in lengths.items()), perfdata)


def check_listener(task, warning_age, critical_age, timeout, now=None):
    """Whether the eternal task `task` runs (a copy holds its lock) and its
    loop went round recently (its heartbeat is younger than `warning_age`
    for OK, `critical_age` for WARNING)."""
    name = task.name.removeprefix('gwcelery.tasks.')
    lock = task.generate_lock(task.name)
    client = _redis(task.singleton_config.backend_url, timeout,
                    decode_responses=True)
    try:
        owner = client.get(lock)
        beat = read_heartbeat(client, lock)
    except redis.RedisError as exc:
        return Result(State.CRITICAL,
                      f'{name}: cannot read its lock and heartbeat ({exc})')
    finally:
        client.close()
    running = '' if owner else ', and no copy holds its lock'
    if beat is None:
        return Result(State.CRITICAL, f'{name}: no heartbeat{running}')
    age = max(0.0, (time.time() if now is None else now) - beat['time'])
    perfdata = (f'{name}_age={age:.1f}s;{warning_age:g};{critical_age:g};0',)
    where = f'{beat["hostname"]} pid {beat["pid"]}'
    if age > critical_age:
        state = State.CRITICAL
    elif age > warning_age or not owner:
        # No lock but a recent beat: a copy just stopped and the next one
        # is about to start (e.g. its worker restarts).
        state = State.WARNING
    else:
        return Result(State.OK, f'{name}: alive, last beat {age:.1f} s ago '
                                f'({where})', perfdata)
    return Result(state, f'{name}: last beat {age:.0f} s ago ({where})'
                         f'{running}', perfdata)


def check_dead_letters(url, key, warning_age, timeout, now=None):
    """Whether a listener dead-lettered a message in the last
    `warning_age` seconds (WARNING, naming the newest one's transport and
    reason); the number of such messages and of all those kept in the list
    `key` go to the performance data."""
    now = time.time() if now is None else now
    client = _redis(url, timeout)
    try:
        kept, recent, newest = dead_letters.summary(
            client, now - warning_age, key)
    except (redis.RedisError, ValueError) as exc:
        return Result(State.UNKNOWN, f'cannot read the dead letters {key} '
                                     f'({exc})')
    finally:
        client.close()
    perfdata = (f'dead_letters={recent};0;;0', f'dead_letters_kept={kept};;;0')
    if not recent:
        return Result(State.OK, f'no dead letter for {warning_age:g} s '
                                f'({kept} kept in {key})', perfdata)
    return Result(State.WARNING, (
        f'{recent} message(s) dead-lettered in the last {warning_age:g} s, '
        f'the newest {now - newest["time"]:.0f} s ago by '
        f'{newest["transport"]}: {newest["reason"][:120]} (see {key})'),
        perfdata)


def _closed_at_once(sock, timeout):
    """Whether the peer closes `sock` within `timeout` s without a word."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b''
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def check_voevent_broker(address, port, accept_addresses, timeout):
    """Whether the VOEvent broker at `address`:`port` keeps a connection
    from an allowed address open (and closes one from any other).

    The broker closes a refused connection at once and keeps an accepted
    one, to which it may send a queued VOEvent; this check closes it
    without acknowledging, so the VOEvent stays queued for GCN.
    """
    host = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1',
            '::': '::1'}.get(address, address)
    where = f'VOEvent broker {host}:{port}'
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Result(State.CRITICAL,
                      f'{where} does not accept connections ({exc})')
    with sock:
        ours = sock.getsockname()[0]
        allowed = ours in allowed_addresses(accept_addresses)
        closed = _closed_at_once(sock, timeout)
    if allowed and closed:
        return Result(State.CRITICAL, f'{where} refused a connection from '
                                      f'{ours}, an allowed address')
    if allowed:
        return Result(State.OK, f'{where} accepts connections from {ours}')
    if closed:
        return Result(State.OK, f'{where} answers (and refuses this host, '
                                f'{ours}, which is not an allowed address)')
    return Result(State.WARNING, f'{where} kept a connection from {ours} '
                                 f'open, which is not an allowed address')


def check_gracedb(url, timeout):
    """Whether GraceDB's API root at `url` answers (2xx OK, 4xx WARNING,
    anything else CRITICAL)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, reason = response.status, response.reason
    except urllib.error.HTTPError as exc:
        status, reason = exc.code, exc.reason
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, 'reason', exc)
        return Result(State.CRITICAL,
                      f'GraceDB {url} not answering ({reason})')
    elapsed = time.monotonic() - started
    perfdata = (f'gracedb_time={elapsed:.3f}s;;;0',)
    if 200 <= status < 300:
        return Result(State.OK, f'GraceDB {url} answers ({elapsed:.2f} s)',
                      perfdata)
    state = State.WARNING if 400 <= status < 500 else State.CRITICAL
    return Result(state, f'GraceDB {url} answers {status} {reason}',
                  perfdata)
