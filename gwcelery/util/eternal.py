"""Eternal tasks: celery-eternal, made safe under Celery 5.

:class:`celery_eternal.EternalTask` gives a task a Beat entry that submits
it every second and a Redis lock (celery-singleton's ``SET NX``) so that
only one copy runs; a warm shutdown aborts it. Used as is, the lock has
no expiry and is released only by the task's own ``on_success`` /
``on_failure`` in the pool child, so a copy that dies without running them
(the child SIGKILLed, ``revoke(terminate=True)``, the whole worker killed,
the machine rebooted with a persistent Redis) leaves the lock behind for
ever, and the task never runs again.

:class:`EternalTask` keeps celery-eternal's model and fixes that:

* The lock is owned: its value is the task id, and it is released or
  renewed only by its owner (compare-and-delete / compare-and-expire in
  one Lua call), so a late release cannot free the lock of the next copy.
* The worker's main process releases the lock of a copy that it saw die
  (signals ``task_failure``, which covers a lost pool child, and
  ``task_revoked``): Beat starts the next copy about a second later.
* The lock expires after :obj:`~gwcelery.conf.eternal_lock_ttl` seconds
  unless renewed; a thread in the process running the task renews it every
  third of that. Whatever kills a copy without any signal (the whole
  worker SIGKILLed), the next one starts within that time.
* A copy that starts checks that the lock is its own (or takes it if it
  expired while the message waited in the queue); otherwise another copy
  runs and it exits at once. A copy whose lock was lost (e.g. Redis was
  unreachable for longer than the expiry, and another copy started) sees
  :meth:`EternalTask.is_aborted` become true and stops.
* A pool process running an eternal task asks the kernel (Linux
  ``prctl(PR_SET_PDEATHSIG)``) to kill it when the worker's main process
  dies, so that no orphan copy lives on out of reach of any worker; its
  lock then expires as above.
* The warm-shutdown step aborts only eternal tasks (celery-eternal's marks
  every running task ABORTED in the result backend).
* The running copy leaves a heartbeat, the Redis key
  :func:`heartbeat_key` of its lock, holding the time, its task id and
  host (see :func:`read_heartbeat`). It is written from
  :meth:`EternalTask.is_aborted`, which only the task's own loop calls, at
  most every :data:`HEARTBEAT_INTERVAL` seconds: a fresh heartbeat proves
  that the loop goes round, where the lock (renewed by a thread of its
  own) only proves that the process lives. ``gwcelery nagios`` reads it.

:class:`Backoff` and :func:`wait_unless_aborted` serve the reconnection
loops of the listeners.

Each running eternal task occupies one pool process of its worker for
ever: the worker's concurrency must exceed the number of eternal tasks
that it runs, by as many processes as ordinary tasks need.
"""

import ctypes
import json
import logging
import math
import os
import signal
import socket
import threading
import time

import billiard.process
import celery_eternal
import redis
from celery import signals
from celery.bootsteps import StartStopStep
from celery.contrib.abortable import AbortableAsyncResult
from celery.utils.log import get_task_logger

__all__ = ('EternalTask', 'Backoff', 'wait_unless_aborted', 'POLL_INTERVAL',
           'HEARTBEAT_INTERVAL', 'heartbeat_key', 'read_heartbeat')

#: Longest time (s) between two checks by an eternal task's loop of whether
#: it has been asked to stop.
POLL_INTERVAL = 1.0

#: Shortest time (s) between two heartbeats of a running copy's loop.
HEARTBEAT_INTERVAL = 5.0

#: Seconds that a heartbeat stays in Redis: long after a copy stopped, the
#: health check can still tell how long ago its loop last went round.
HEARTBEAT_TTL = 86400

log = get_task_logger(__name__)

#: Logger for what runs outside the task's context: the lock-renewing
#: thread and the worker's main process.
process_log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class LockStore:
    """Owned, expiring locks in Redis."""

    _clients = {}

    def __init__(self, url):
        client = self._clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=10,
                socket_connect_timeout=10)
            self._clients[url] = client
        self.redis = client

    def acquire(self, key, owner, ttl):
        """Take the lock if it is free; return whether we got it."""
        return bool(self.redis.set(key, owner, nx=True,
                                   px=int(ttl * 1000)))

    def owner(self, key):
        return self.redis.get(key)

    def release(self, key, owner):
        """Free the lock if `owner` holds it; return whether it did."""
        return bool(self.redis.eval(_RELEASE, 1, key, owner))

    def renew(self, key, owner, ttl):
        """Extend the lock if `owner` holds it; return whether it did."""
        return bool(self.redis.eval(_RENEW, 1, key, owner,
                                    int(ttl * 1000)))

    def delete(self, key):
        self.redis.delete(key)

    def write_heartbeat(self, key, owner):
        """Record that copy `owner` of the task locked by `key` is alive."""
        beat = {'time': time.time(), 'task_id': owner,
                'hostname': socket.gethostname(), 'pid': os.getpid()}
        self.redis.set(heartbeat_key(key), json.dumps(beat),
                       ex=HEARTBEAT_TTL)


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


def _die_with_parent():
    """In a pool process: be SIGKILLed when the worker's main process
    dies (Linux only; elsewhere nothing happens)."""
    process = billiard.process.current_process()
    parent = getattr(process, '_parent_pid', None)
    if process.name == 'MainProcess' or not parent:
        return  # the solo pool: this is the worker itself
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        os.kill(os.getpid(), signal.SIGKILL)


class _Renewer(threading.Thread):
    """Renew a lock every third of its lifetime until stopped; set
    :attr:`lost` if it turns out to belong to someone else. Also holds
    when the task's loop last asked about aborts and last beat."""

    def __init__(self, store, key, owner, ttl, name):
        super().__init__(name=f'{name} lock', daemon=True)
        self.store = store
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.lost = threading.Event()
        self.aborted = False
        self.next_abort_check = -math.inf
        self.next_heartbeat = -math.inf
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.wait(self.ttl / 3):
            try:
                if (self.store.renew(self.key, self.owner, self.ttl)
                        or self.store.acquire(self.key, self.owner,
                                              self.ttl)):
                    continue
                process_log.error(
                    '%s: the singleton lock now belongs to task %s; '
                    'stopping this copy', self.name,
                    self.store.owner(self.key))
                self.lost.set()
                return
            except redis.RedisError as exc:
                process_log.warning(
                    '%s: could not renew the singleton lock: %s', self.name,
                    exc)

    def stop(self):
        self._stop_event.set()
        self.join(5)

    def beat_if_due(self, now):
        """Write the heartbeat unless one was written less than
        :data:`HEARTBEAT_INTERVAL` seconds (monotonic `now`) ago. Called by
        the task's loop, never by this thread (see the module docstring)."""
        if now < self.next_heartbeat:
            return
        self.next_heartbeat = now + HEARTBEAT_INTERVAL
        try:
            self.store.write_heartbeat(self.key, self.owner)
        except redis.RedisError as exc:
            process_log.warning('%s: could not write the heartbeat: %s',
                                self.name, exc)


class AbortEternalTasks(StartStopStep):
    """Worker boot step: on shutdown, abort the running eternal tasks so
    that they return (their loops poll :meth:`EternalTask.is_aborted`)."""

    requires = {'celery.worker.components:Pool'}

    def stop(self, worker):
        for request in list(worker.state.active_requests):
            if not isinstance(request.task, EternalTask):
                continue
            try:
                AbortableAsyncResult(request.id, app=worker.app).abort()
            except Exception as exc:  # the result backend is unreachable
                process_log.error('%s: cannot ask task %s to stop: %s',
                                  request.task.name, request.id, exc)


class EternalTask(celery_eternal.EternalTask):
    """Base class of the eternal tasks (see the module docstring).

    Declare one with ``@app.task(base=EternalTask, bind=True,
    shared=False)``; its body loops until :meth:`is_aborted` is true,
    checking it at least every second or so.
    """

    abstract = True
    ignore_result = True
    _renewer = None

    @classmethod
    def on_bound(cls, app):
        app.add_periodic_task(1.0, cls, name=f'eternal {cls.name}')
        app.steps['worker'].add(AbortEternalTasks)

    # --- lock storage (replaces celery-singleton's) ---------------------

    @property
    def lock_ttl(self):
        return float(self.app.conf['eternal_lock_ttl'])

    @property
    def lock_store(self):
        return LockStore(self.singleton_config.backend_url)

    def aquire_lock(self, lock, task_id):
        # (sic) celery-singleton's method name.
        return self.lock_store.acquire(lock, task_id, self.lock_ttl)

    def get_existing_task_id(self, lock):
        return self.lock_store.owner(lock)

    def unlock(self, lock):
        self.lock_store.delete(lock)

    def release_lock_of(self, task_id, args=None, kwargs=None):
        """Release the lock of this task if copy `task_id` holds it."""
        lock = self.generate_lock(self.name, args, kwargs)
        return self.lock_store.release(lock, task_id)

    # --- running ----------------------------------------------------------

    def __call__(self, *args, **kwargs):
        task_id = self.request.id
        if task_id is None:  # called directly as a function
            return self.run(*args, **kwargs)
        lock = self.generate_lock(self.name, args, kwargs)
        store = self.lock_store
        owner = store.owner(lock)
        if owner != task_id and not store.acquire(lock, task_id,
                                                  self.lock_ttl):
            log.info('%s: another copy (task %s) is running; this one '
                     '(task %s) exits', self.name, owner, task_id)
            self.request.duplicate = True
            return None
        _die_with_parent()
        renewer = _Renewer(store, lock, task_id, self.lock_ttl, self.name)
        renewer.start()
        self._renewer = renewer
        log.info('%s: started (task %s)', self.name, task_id)
        try:
            return self.run(*args, **kwargs)
        finally:
            renewer.stop()
            self._renewer = None

    def is_aborted(self, **kwargs):
        """Whether this copy must stop: aborted (warm shutdown of its
        worker, or an explicit abort), or its lock was lost.

        A running copy asks the result backend at most once per
        :data:`POLL_INTERVAL`: listeners call this between packets, and
        a round trip to Redis per packet would cost them more than the
        packet. It also writes the heartbeat when one is due.
        """
        renewer = self._renewer
        if renewer is None or kwargs:
            return super().is_aborted(**kwargs)
        if renewer.lost.is_set() or renewer.aborted:
            return True
        now = time.monotonic()
        if now >= renewer.next_abort_check:
            renewer.aborted = super().is_aborted()
            renewer.next_abort_check = now + POLL_INTERVAL
        renewer.beat_if_due(now)
        return renewer.aborted

    def _finish(self, task_id, args, kwargs):
        if getattr(self.request, 'duplicate', False):
            return
        self.release_lock_of(task_id, args, kwargs)
        if self.is_aborted():
            log.info('%s: stopped as asked (task %s)', self.name, task_id)
        else:
            log.error('%s: exited although nobody asked it to (task %s); '
                      'Beat will start it again', self.name, task_id)

    def on_success(self, retval, task_id, args, kwargs):
        self._finish(task_id, args, kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self._finish(task_id, args, kwargs)


class Backoff:
    """Delays that double from `first` up to `longest`; reset on success."""

    def __init__(self, first, longest):
        self.first = float(first)
        self.longest = float(longest)
        self.reset()

    def reset(self):
        self._next = self.first

    def next(self):
        delay = self._next
        self._next = min(2 * self._next, self.longest)
        return delay


def wait_unless_aborted(task, seconds):
    """Sleep up to `seconds`, returning early (True) if `task` is aborted."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if task.is_aborted():
            return True
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
    return task.is_aborted()


def _eternal(task):
    return isinstance(task, EternalTask)


def _release(task, task_id, args, kwargs, what):
    try:
        if task.release_lock_of(task_id, args, kwargs):
            process_log.warning('%s: task %s %s; released its lock',
                                task.name, task_id, what)
    except redis.RedisError as exc:
        process_log.error('%s: task %s %s, but its lock could not be '
                          'released (%s); it expires within %.0f s',
                          task.name, task_id, what, exc, task.lock_ttl)


@signals.task_failure.connect
def _release_after_failure(sender=None, task_id=None, args=None,
                           kwargs=None, **_):
    """In the worker's main process this is how a lost pool child (e.g.
    SIGKILLed) is reported; release the dead copy's lock."""
    if _eternal(sender) and task_id:
        _release(sender, task_id, args, kwargs, 'died')


@signals.task_revoked.connect
def _release_after_revoke(sender=None, request=None, **_):
    """Release the lock of a revoked (e.g. terminated) copy."""
    if _eternal(sender) and request is not None and request.id:
        _release(sender, request.id, request.args, request.kwargs,
                 'was revoked')
