"""The Redis locks of the eternal tasks (:mod:`gwcelery.util.eternal`).

Each eternal task has two keys, both holding a task id and both expiring
after the lock's lifetime unless renewed:

* the *reservation* (:func:`reservation_key`), taken by Beat when it
  submits a copy, while no copy runs and no other copy is queued: it stops
  Beat from queueing a copy every second while one waits in the queue;
* the *lease* (the lock key itself, celery-singleton's name), claimed by a
  copy when it starts running and renewed for as long as it runs, both by
  a thread of the copy's process (:class:`LeaseRenewer`) and by the main
  process of its worker (:class:`WorkerLeaseRenewer`), which runs no task
  code: a C call or an import that holds the copy's GIL for seconds
  (stretched by CPU load) cannot hold up that one. Only a running copy
  ever holds the lease.

A copy that starts takes the lease, with its full lifetime, whenever no
other copy holds it, whatever became of its own reservation: a message
may wait in the queue longer than the lifetime (a worker slow to start
under CPU load, a backlog of other tasks), and a reservation that lapsed
meanwhile must not make the copy give way to one queued later. A running
copy whose lease lapsed (its process starved, Redis unreachable) takes it
back at its next renewal unless another copy started meanwhile; a queued
copy never displaces a running one.

Why not a single key: then Beat's reservation and the running copy's
lease were the same key, and the lease's lifetime began when the message
was queued. A copy that waited more than two thirds of the lifetime in the
queue started with a lock about to lapse, renewed it only a third of the
lifetime later, and by then Beat had given it to a new queued copy: the
running copy stopped for one that was still waiting behind the backlog.
"""

import json
import logging
import os
import socket
import threading
import time

import redis

__all__ = ('LockStore', 'LeaseRenewer', 'WorkerLeaseRenewer',
           'reservation_key', 'heartbeat_key', 'read_heartbeat',
           'HEARTBEAT_TTL', 'LOST', 'RENEWED', 'TAKEN')

#: Seconds that a heartbeat stays in Redis: long after a copy stopped, the
#: health check can still tell how long ago its loop last went round.
HEARTBEAT_TTL = 86400

#: Longest wait (s) before a renewal that failed (Redis error or timeout)
#: is tried again, so that a short outage does not cost the lease.
RETRY_DELAY = 1.0

#: Results of :meth:`LockStore.claim`: another copy holds the lease; ours
#: was extended; it was free (a start, or ours had lapsed) and is now ours.
LOST, RENEWED, TAKEN = 0, 1, 2

process_log = logging.getLogger('gwcelery.util.eternal')

# KEYS: lease, reservation. ARGV: task id, lifetime (ms).
_RESERVE = """
if redis.call('exists', KEYS[1]) == 1 then
    return 0
end
if redis.call('set', KEYS[2], ARGV[1], 'nx', 'px', ARGV[2]) then
    return 1
end
return 0
"""

_CLAIM = """
local owner = redis.call('get', KEYS[1])
if owner and owner ~= ARGV[1] then
    return 0
end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
if redis.call('get', KEYS[2]) == ARGV[1] then
    redis.call('del', KEYS[2])
end
if owner then
    return 1
end
return 2
"""

# KEYS: lease. ARGV: task id, lifetime (ms).
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease, reservation. ARGV: task id.
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
    if redis.call('get', key) == ARGV[1] then
        released = released + redis.call('del', key)
    end
end
return released
"""


def reservation_key(lock):
    """Redis key of Beat's reservation for a queued copy of the eternal
    task whose lock (lease) is `lock`."""
    return f'{lock}:queued'


def heartbeat_key(lock):
    """Redis key of the heartbeat of the eternal task whose lock is `lock`."""
    return f'{lock}:heartbeat'


def read_heartbeat(client, lock):
    """The last heartbeat of the eternal task whose lock is `lock`.

    `client` is a :class:`redis.Redis` of the lock's server. Returns
    ``None`` if there is none, else a dict: ``time`` (Unix time of the
    beat), ``task_id``, ``hostname`` and ``pid`` of the copy that wrote it.
    """
    value = client.get(heartbeat_key(lock))
    return None if value is None else json.loads(value)


def socket_timeout(ttl):
    """Socket timeout (s) of the lock's Redis client: at most a renewal
    interval (a third of the lifetime `ttl`), so that a renewal stuck on a
    slow Redis gives up in time for another try before the lease lapses;
    at least a second, and at most ten."""
    return max(1.0, min(10.0, ttl / 3))


class LockStore:
    """Reservations and leases of the eternal tasks, in one Redis."""

    _clients = {}

    def __init__(self, url, timeout=10.0):
        client = self._clients.get((url, timeout))
        if client is None:
            client = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=timeout,
                socket_connect_timeout=timeout)
            self._clients[url, timeout] = client
        self.redis = client

    def acquire(self, key, owner, ttl):
        """Take the lease `key` if it is free; return whether we got it."""
        return bool(self.redis.set(key, owner, nx=True,
                                   px=int(ttl * 1000)))

    def reserve(self, key, owner, ttl):
        """Beat: reserve the task for queued copy `owner` unless a copy
        runs or another is queued; return whether it did."""
        return bool(self.redis.eval(_RESERVE, 2, key, reservation_key(key),
                                    owner, int(ttl * 1000)))

    def claim(self, key, owner, ttl):
        """Running copy `owner`: take or extend the lease for `ttl` s unless
        another copy holds it; drop our reservation. Returns
        :data:`LOST`, :data:`RENEWED` or :data:`TAKEN`."""
        return int(self.redis.eval(_CLAIM, 2, key, reservation_key(key),
                                   owner, int(ttl * 1000)))

    def extend(self, key, owner, ttl):
        """Extend the lease if `owner` holds it (never take it); return
        whether it did."""
        return bool(self.redis.eval(_EXTEND, 1, key, owner,
                                    int(ttl * 1000)))

    def owner(self, key):
        """The copy that holds the lease (runs), or ``None``."""
        return self.redis.get(key)

    def holder(self, key):
        """The copy that runs, else the one queued, else ``None``."""
        running, queued = self.redis.mget(key, reservation_key(key))
        return running or queued

    def release(self, key, owner):
        """Free the lease and the reservation that `owner` holds; return
        whether there was any."""
        return bool(self.redis.eval(_RELEASE, 2, key, reservation_key(key),
                                    owner))

    def drop_reservation(self, key):
        self.redis.delete(reservation_key(key))

    def delete(self, key):
        self.redis.delete(key, reservation_key(key))

    def write_heartbeat(self, key, owner):
        """Record that copy `owner` of the task locked by `key` is alive."""
        beat = {'time': time.time(), 'task_id': owner,
                'hostname': socket.gethostname(), 'pid': os.getpid()}
        self.redis.set(heartbeat_key(key), json.dumps(beat),
                       ex=HEARTBEAT_TTL)


class LeaseRenewer(threading.Thread):
    """Keep the lease of a running copy, which has just claimed it.

    Renews it a third of the lifetime after the start of the previous
    renewal (a deadline, not a sleep after it), and tries again within
    :data:`RETRY_DELAY` after a failure. Sets :attr:`lost` if another copy
    holds it; counts in :attr:`lapses` the renewals that found it lapsed
    and took it back.
    """

    def __init__(self, store, key, owner, ttl, name):
        super().__init__(name=f'{name} lock', daemon=True)
        self.store = store
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.interval = ttl / 3
        self.lost = threading.Event()
        self.lapses = 0
        self.renewed = time.monotonic()
        self._stop_event = threading.Event()

    def run(self):
        delay = self.interval
        while not self._stop_event.wait(delay):
            delay = self.renew_once()
            if delay is None:
                return

    def renew_once(self):
        """Renew once; return the wait before the next renewal, or
        ``None`` if the lease now belongs to another copy."""
        started = time.monotonic()
        try:
            result = self.store.claim(self.key, self.owner, self.ttl)
        except redis.RedisError as exc:
            process_log.warning('%s: could not renew the singleton lock: %s',
                                self.name, exc)
            return min(RETRY_DELAY, self.interval)
        if result == LOST:
            process_log.error(
                '%s: the singleton lock now belongs to task %s; stopping '
                'this copy', self.name, self.store.owner(self.key))
            self.lost.set()
            return None
        if result == TAKEN:
            self.lapses += 1
            process_log.warning(
                '%s: the singleton lock had lapsed (renewed %.1f s ago, '
                'lifetime %.1f s) and no other copy runs; taken back',
                self.name, started - self.renewed, self.ttl)
        self.renewed = started
        return max(0.0, started + self.interval - time.monotonic())

    def stop(self):
        self._stop_event.set()
        self.join(5)


class WorkerLeaseRenewer(threading.Thread):
    """In a worker's main process: extend, every third of the lifetime
    `ttl`, the leases of the copies that run in its pool.

    `running` returns the ``(store, lock, task id)`` of each. It only
    extends a lease that the copy holds (a copy that found another one
    running must not get it): taking a lapsed lease back, and noticing
    that another copy took it, are the copy's own renewer's business.
    """

    def __init__(self, running, ttl):
        super().__init__(name='eternal task leases', daemon=True)
        self.running = running
        self.ttl = ttl
        self.interval = ttl / 3
        self._stop_event = threading.Event()

    def run(self):
        delay = self.interval
        while not self._stop_event.wait(delay):
            started = time.monotonic()
            delay = self.interval
            for store, lock, owner in self.running():
                try:
                    store.extend(lock, owner, self.ttl)
                except redis.RedisError as exc:
                    process_log.warning('could not renew the lock of task '
                                        '%s: %s', owner, exc)
                    delay = min(RETRY_DELAY, self.interval)
            delay = max(0.0, started + delay - time.monotonic())

    def stop(self):
        self._stop_event.set()
        self.join(5)
