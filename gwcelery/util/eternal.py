"""Eternal tasks: celery-eternal, made safe under Celery 5.

:class:`celery_eternal.EternalTask` gives a task a Beat entry that submits
it every second and a Redis lock (celery-singleton's ``SET NX``) so that
only one copy runs; a warm shutdown aborts it. Used as is, the lock has
no expiry and is released only by the task's own ``on_success`` /
``on_failure`` in the pool child, so a copy that dies without running them
(the child SIGKILLed, ``revoke(terminate=True)``, the whole worker killed,
the machine rebooted with a persistent Redis) leaves the lock behind for
ever, and the task never runs again.

:class:`EternalTask` keeps celery-eternal's model and fixes that (the
locks: :mod:`gwcelery.util.eternal_locks`):

* Two owned keys instead of one: Beat's *reservation* for the copy that it
  queues, and the *lease* of the copy that runs, each holding a task id
  and released or renewed only by its owner (compare-and-delete /
  compare-and-set in one Lua call), so that a late release cannot free the
  lock of the next copy. Beat queues a copy only while neither is held.
* A copy that starts claims the lease, with its full lifetime, unless
  another copy holds it (then it exits at once); its reservation may have
  lapsed while the message waited in the queue (a worker slow to start,
  a backlog), which does not matter. A queued copy therefore never
  displaces a running one, and each listener starts once.
* The lease expires after :obj:`~gwcelery.conf.eternal_lock_ttl` seconds
  unless renewed. It is renewed every third of that (retrying within a
  second after a Redis error) by a thread in the process running the task
  and, where the task runs in a pool process, by the worker's main process
  (boot step :class:`RenewEternalLeases`), which a GIL held in the task's
  process cannot hold up. A renewal that finds it lapsed (the processes
  starved, Redis unreachable) takes it back unless another copy started
  meanwhile; one that finds another copy's id sees
  :meth:`EternalTask.is_aborted` become true and stops.
* The worker's main process releases the lease of a copy that it saw die
  (signals ``task_failure``, which covers a lost pool child, and
  ``task_revoked``): Beat starts the next copy about a second later.
  Whatever kills a copy without any signal (the whole worker SIGKILLed),
  its lease lapses within the lifetime, and Beat queues the next copy
  within a second more.
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
  that the loop goes round, where the lease (renewed by a thread of its
  own and by the worker) only proves that the process lives: a copy whose
  loop hangs keeps its lease. ``gwcelery nagios`` reads it.

:class:`Backoff` and :func:`wait_unless_aborted` serve the reconnection
loops of the listeners.

Each running eternal task occupies one pool process of its worker for
ever: the worker's concurrency must exceed the number of eternal tasks
that it runs, by as many processes as ordinary tasks need.
"""

import ctypes
import logging
import math
import os
import signal
import time

import billiard.process
import celery_eternal
import redis
from celery import signals
from celery.bootsteps import StartStopStep
from celery.contrib.abortable import AbortableAsyncResult
from celery.utils.log import get_task_logger
from celery.worker import state as worker_state

from .eternal_locks import (
    HEARTBEAT_TTL,
    LOST,
    LeaseRenewer,
    LockStore,
    WorkerLeaseRenewer,
    heartbeat_key,
    read_heartbeat,
    socket_timeout,
)

__all__ = ('EternalTask', 'Backoff', 'wait_unless_aborted', 'POLL_INTERVAL',
           'HEARTBEAT_INTERVAL', 'HEARTBEAT_TTL', 'LockStore', 'heartbeat_key',
           'read_heartbeat')

#: Longest time (s) between two checks by an eternal task's loop of whether
#: it has been asked to stop.
POLL_INTERVAL = 1.0

#: Shortest time (s) between two heartbeats of a running copy's loop.
HEARTBEAT_INTERVAL = 5.0

log = get_task_logger(__name__)

#: Logger for what runs outside the task's context: the lock-renewing
#: thread and the worker's main process.
process_log = logging.getLogger(__name__)


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


class _Renewer(LeaseRenewer):
    """The lease's renewer (see :class:`LeaseRenewer`), which also holds
    when the task's loop last asked about aborts and last beat."""

    def __init__(self, store, key, owner, ttl, name):
        super().__init__(store, key, owner, ttl, name)
        self.aborted = False
        self.next_abort_check = -math.inf
        self.next_heartbeat = -math.inf

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


def _running_copies():
    """In a worker's main process: (store, lock, task id) of each copy of
    an eternal task that runs in its pool."""
    for request in list(worker_state.active_requests):
        task = request.task
        if isinstance(task, EternalTask):
            lock = task.generate_lock(task.name, request.args,
                                      request.kwargs)
            yield task.lock_store, lock, request.id


class RenewEternalLeases(StartStopStep):
    """Worker boot step: renew the leases of the eternal tasks running in
    the pool from the main process too (see the module docstring)."""

    requires = {'celery.worker.components:Pool'}
    renewer = None

    def start(self, worker):
        ttl = float(worker.app.conf['eternal_lock_ttl'])
        self.renewer = WorkerLeaseRenewer(_running_copies, ttl)
        self.renewer.start()

    def stop(self, worker):
        if self.renewer is not None:
            self.renewer.stop()


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
        app.steps['worker'].add(RenewEternalLeases)

    # --- lock storage (replaces celery-singleton's) ---------------------

    @property
    def lock_ttl(self):
        return float(self.app.conf['eternal_lock_ttl'])

    @property
    def lock_store(self):
        return LockStore(self.singleton_config.backend_url,
                         socket_timeout(self.lock_ttl))

    def aquire_lock(self, lock, task_id):
        # (sic) celery-singleton's method name, called when Beat (or anyone)
        # submits a copy: reserve the task for it.
        return self.lock_store.reserve(lock, task_id, self.lock_ttl)

    def get_existing_task_id(self, lock):
        return self.lock_store.holder(lock)

    def unlock(self, lock):
        # celery-singleton calls this when sending the reserved copy failed.
        self.lock_store.drop_reservation(lock)

    def release_lock_of(self, task_id, args=None, kwargs=None):
        """Release the lease or reservation of copy `task_id`, if any."""
        lock = self.generate_lock(self.name, args, kwargs)
        return self.lock_store.release(lock, task_id)

    # --- running ----------------------------------------------------------

    def __call__(self, *args, **kwargs):
        task_id = self.request.id
        if task_id is None:  # called directly as a function
            return self.run(*args, **kwargs)
        lock = self.generate_lock(self.name, args, kwargs)
        store = self.lock_store
        if store.claim(lock, task_id, self.lock_ttl) == LOST:
            log.info('%s: another copy (task %s) is running; this one '
                     '(task %s) exits', self.name, store.owner(lock), task_id)
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
