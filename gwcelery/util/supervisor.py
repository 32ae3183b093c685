"""Run a set of child processes, restart the ones that die, stop them all.

The process manager behind ``gwcelery local``. Every child asks the kernel
(Linux ``prctl(PR_SET_PDEATHSIG)``) for a signal when the supervisor dies,
so that no child outlives it, however it ends (even SIGKILL). A Celery
worker's pool processes, the supervisor's grandchildren, go with their
worker: Celery's prefork pool asks the kernel for the same on their
behalf. An orderly stop also kills whatever is left in each child's
process group.

A child that exits, whatever its status, is reported and started again
after :attr:`Supervisor.restart_delay`; one that keeps exiting soon after
its start waits twice as long each time, up to
:attr:`Supervisor.max_restart_delay`, so that a child that cannot run
does not take the machine's cores in a loop of restarts.
"""

import ctypes
import logging
import os
import signal
import subprocess
import time

from . import early_signals

log = logging.getLogger(__name__)

#: ``prctl`` option: the signal that a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def parent_death_signal(signum=signal.SIGKILL):
    """Return a ``preexec_fn`` for :class:`subprocess.Popen` that makes
    the child receive `signum` when this process dies.

    Strictly, when the thread that starts the child ends: start children
    from the main thread. Returns None where ``prctl`` does not exist
    (not Linux); the children then outlive a supervisor that is killed.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent():
        prctl(PR_SET_PDEATHSIG, int(signum))
        # The parent may have died between fork and prctl: then no signal
        # will ever come, and the child is already someone else's.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return die_with_parent


class StopSignals:
    """SIGINT and SIGTERM as a KeyboardInterrupt that is never lost.

    Python drops an exception raised where it cannot propagate: in an
    at-fork hook (which ``subprocess`` runs when it starts a child with a
    ``preexec_fn``) or a ``__del__``, for example. The handler therefore
    also records the signal, and :meth:`raise_if_received`, called at the
    checkpoints of a start-up or a main loop, raises it again.
    """

    def __init__(self):
        self.received = None

    def install(self):
        """Handle SIGINT and SIGTERM from now on (main thread only),
        taking over one that came while the command was starting
        (:mod:`gwcelery.util.early_signals`)."""
        self.received = early_signals.received
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt

    def raise_if_received(self):
        """Raise KeyboardInterrupt if a stop signal came."""
        if self.received is not None:
            raise KeyboardInterrupt


class ChildError(RuntimeError):
    """A child did not start, or did not become ready."""


def describe_status(status):
    """Say how a process ended, from its :attr:`Popen.returncode`."""
    if status is None:
        return 'is running'
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f'signal {-status}'
        return f'was killed by {name}'
    return f'exited with status {status}'


class Child:
    """A supervised child process.

    Parameters
    ----------
    name : str
        Short name used in messages and for the log file.
    argv : list of str
        Command line (kept for every restart: a server restarts on the
        same port).
    env : dict
        Environment of the process (None: this process's).
    logfile : str
        File that receives the process's standard output and error.
    death_signal : int
        Signal that the process gets if the supervisor dies.
    ready : callable, optional
        Returns whether the started process serves: :meth:`wait_ready`
        polls it.
    stop_rank : int
        Order of the orderly stop: children of rank 0 (the default) go
        first, then rank 1, and so on; give the servers that the others
        use (Redis, the Kafka broker) a higher rank, so that clients
        stop while their servers still answer.
    """

    def __init__(self, name, argv, env, logfile,
                 death_signal=signal.SIGKILL, ready=None, stop_rank=0):
        self.name = name
        self.argv = argv
        self.env = env
        self.logfile = logfile
        self.death_signal = death_signal
        self.ready = ready
        self.stop_rank = stop_rank
        self.process = None
        self.started_at = None
        #: Starts after the first one.
        self.restarts = 0
        #: Exits in a row that came soon after their start.
        self.quick_exits = 0
        #: How the last run ended (:func:`describe_status`), or None.
        self.last_exit = None
        #: When (:func:`time.monotonic`) the next start is due while the
        #: child waits to be restarted; None otherwise.
        self.restart_at = None

    def start(self):
        """Start the process, appending its output to :attr:`logfile`."""
        with open(self.logfile, 'ab') as out:
            # A new session: Ctrl-C in the terminal reaches the supervisor
            # only, which then stops the children in order.
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=parent_death_signal(self.death_signal))
        self.started_at = time.monotonic()
        return self

    def wait_ready(self, timeout):
        """Wait until :attr:`ready` says the process serves; raise
        :class:`ChildError` if it exits or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.ready is not None and not self.ready():
            status = self.poll()
            if status is not None:
                raise ChildError(f'{self.name} {describe_status(status)} '
                                 f'(see {self.logfile})')
            if time.monotonic() > deadline:
                raise ChildError(f'{self.name} was not ready within '
                                 f'{timeout} s (see {self.logfile})')
            time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def poll(self):
        """Return the exit status, or None while running (or never
        started). A child that died is reaped here: no zombie stays."""
        return self.process.poll() if self.process else None

    @property
    def state(self):
        """'running', 'restarting' (waiting for its next start), or
        'stopped'."""
        if self.restart_at is not None:
            return 'restarting'
        if self.process is not None and self.process.returncode is None:
            return 'running'
        return 'stopped'

    def terminate(self):
        """Ask the process to stop: SIGTERM to it alone, so that a Celery
        worker does a warm shutdown of its own pool processes."""
        if self.process and self.process.poll() is None:
            self.process.terminate()

    def kill(self):
        """Kill the process group outright."""
        if self.process and self.process.poll() is None:
            self.kill_group()

    def kill_group(self):
        """SIGKILL whatever is left in the process's group: the pool
        processes of a worker that exited while they were busy."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout):
        """SIGTERM, then SIGKILL after `timeout` seconds; return whether
        it had to be killed."""
        self.terminate()
        try:
            if self.process is not None:
                self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()
            return True
        finally:
            self.kill_group()
        return False


class Supervisor:
    """Start children in order, restart any that exit, stop them by rank.

    Parameters
    ----------
    report : callable
        Called with a one-line message for every exit, restart and kill.
    restart_delay : float
        Seconds to wait before restarting a child that exited.
    max_restart_delay : float
        Longest wait: a child that exits again less than `stable_after`
        seconds after its start waits twice as long as the last time, up
        to this.
    stable_after : float
        Seconds after which a run counts as a success: the next exit
        waits `restart_delay` again.
    """

    def __init__(self, report=print, restart_delay=1.0,
                 max_restart_delay=60.0, stable_after=30.0):
        self.children = []
        self.report = report
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.stable_after = stable_after
        self._stopping = False

    def add(self, child, timeout=60):
        """Start `child`, wait until it is ready (if it says how to know),
        and supervise it from now on."""
        # Listed first: if an interrupt comes while it starts, stop() still
        # sees it once its process exists.
        self.children.append(child)
        child.start()
        return child.wait_ready(timeout)

    def check(self):
        """Handle each child that has exited, and start those whose wait is
        over; return the children started again."""
        restarted = []
        for child in self.children:
            if self._stopping:
                break
            now = time.monotonic()
            if child.restart_at is not None:
                if now >= child.restart_at and self._restart(child):
                    restarted.append(child)
                continue
            status = child.poll()
            if status is not None and child.started_at is not None:
                self._exited(child, status, now)
        return restarted

    def _next_delay(self, child, ran):
        """Seconds before the next start of a child that ran `ran` s."""
        if ran >= self.stable_after:
            child.quick_exits = 0
        else:
            child.quick_exits += 1
        return min(self.max_restart_delay,
                   self.restart_delay * 2 ** child.quick_exits)

    def _exited(self, child, status, now):
        child.kill_group()  # pool processes of a worker that crashed
        ran = now - child.started_at
        delay = self._next_delay(child, ran)
        child.last_exit = describe_status(status)
        child.restart_at = now + delay
        backing_off = ''
        if child.quick_exits > 1:
            backing_off = (f'; backing off: {child.quick_exits} exits in a '
                           f'row within {self.stable_after:g} s of a start')
        self.report(f'{child.name} (pid {child.pid}) {child.last_exit} '
                    f'after {ran:.1f} s; restarting it in {delay:g} s'
                    f'{backing_off} (see {child.logfile})')

    def _restart(self, child):
        child.restart_at = None
        child.restarts += 1
        try:
            child.start()
        except OSError as error:  # e.g. its program was removed
            child.started_at = time.monotonic()
            delay = self._next_delay(child, 0.0)
            child.last_exit = f'could not start: {error}'
            child.restart_at = child.started_at + delay
            self.report(f'{child.name} {child.last_exit}; trying again in '
                        f'{delay:g} s')
            return False
        self.report(f'{child.name} restarted (pid {child.pid}, restart '
                    f'{child.restarts})')
        return True

    def stop(self, timeout=15):
        """Stop every child, rank by rank (:attr:`Child.stop_rank`).

        Each child of a rank gets SIGTERM at once (a Celery worker then
        does a warm shutdown); one still running `timeout` seconds later
        is killed, and reported. Another interrupt (Ctrl-C) meanwhile
        kills every child at once. Then whatever is left in their process
        groups is killed.
        """
        self._stopping = True
        for child in self.children:
            child.restart_at = None
        try:
            for rank in sorted({child.stop_rank for child in self.children}):
                self._stop_rank(rank, timeout)
        except KeyboardInterrupt:
            self.report('Interrupted again: killing every child')
            for child in self.children:
                child.kill()
        for child in self.children:
            if child.process is not None:
                child.process.wait()
                child.kill_group()

    def _stop_rank(self, rank, timeout):
        children = [child for child in reversed(self.children)
                    if child.stop_rank == rank and child.process is not None]
        for child in children:
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report(f'{child.name} (pid {child.pid}) did not stop '
                            f'within {timeout:g} s of SIGTERM; killing it '
                            f'(see {child.logfile})')
                child.kill()
                child.process.wait()

    def run_forever(self, poll_interval=0.5, on_tick=None):
        """Supervise until KeyboardInterrupt, which propagates: the caller
        stops the children (:meth:`stop`) with whatever else it started.
        """
        while True:
            self.check()
            if on_tick is not None:
                on_tick()
            time.sleep(poll_interval)
