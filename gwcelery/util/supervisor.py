"""Run a set of child processes, restart the ones that die, stop them all.

The process manager behind ``gwcelery local``. Every child asks the kernel
(Linux ``prctl(PR_SET_PDEATHSIG)``) for a signal when the supervisor dies,
so that no child outlives it, however it ends (even SIGKILL). A Celery
worker's pool processes, the supervisor's grandchildren, go with their
worker: Celery's prefork pool asks the kernel for the same on their
behalf. An orderly stop also kills whatever is left in each child's
process group.
"""

import ctypes
import logging
import os
import signal
import subprocess
import time

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
        """Handle SIGINT and SIGTERM from now on (main thread only)."""
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


class Child:
    """A supervised child process.

    Parameters
    ----------
    name : str
        Short name used in messages and for the log file.
    argv : list of str
        Command line.
    env : dict
        Environment of the process.
    logfile : str
        File that receives the process's standard output and error.
    death_signal : int
        Signal that the process gets if the supervisor dies.
    """

    def __init__(self, name, argv, env, logfile,
                 death_signal=signal.SIGKILL):
        self.name = name
        self.argv = argv
        self.env = env
        self.logfile = logfile
        self.death_signal = death_signal
        self.process = None
        self.restarts = 0

    def start(self):
        """Start the process, appending its output to :attr:`logfile`."""
        with open(self.logfile, 'ab') as out:
            # A new session: Ctrl-C in the terminal reaches the supervisor
            # only, which then stops the children in order.
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=parent_death_signal(self.death_signal))
        return self

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def poll(self):
        """Return the exit status, or None while running."""
        return self.process.poll() if self.process else None

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


class Supervisor:
    """Start children in order, restart any that exit, stop in reverse.

    Parameters
    ----------
    report : callable
        Called with a one-line message for every start, exit and restart.
    restart_delay : float
        Seconds to wait before restarting a child that exited.
    """

    def __init__(self, report=print, restart_delay=1.0):
        self.children = []
        self.report = report
        self.restart_delay = restart_delay
        self._stopping = False

    def add(self, child):
        """Start `child` and supervise it from now on."""
        # Listed first: if an interrupt comes while it starts, stop() still
        # sees it once its process exists.
        self.children.append(child)
        child.start()
        return child

    def check(self):
        """Restart each child that has exited; return the restarted ones."""
        restarted = []
        for child in self.children:
            status = child.poll()
            if status is None or self._stopping:
                continue
            self.report(f'{child.name} exited with status {status}; '
                        f'restarting it (see {child.logfile})')
            child.kill_group()  # pool processes of a worker that crashed
            time.sleep(self.restart_delay)
            child.restarts += 1
            child.start()
            restarted.append(child)
        return restarted

    def stop(self, timeout=15):
        """Stop every child, the last started first.

        Each gets SIGTERM (a Celery worker then does a warm shutdown); a
        child still running after `timeout` seconds in all is killed, and
        so are all of them at once if another interrupt (Ctrl-C) comes
        meanwhile. Then whatever is left in their process groups is killed.
        """
        self._stopping = True
        try:
            self._stop_gently(timeout)
        except KeyboardInterrupt:
            self.report('Interrupted again: killing every child')
            for child in self.children:
                child.kill()
        for child in self.children:
            if child.process is not None:
                child.process.wait()
                child.kill_group()

    def _stop_gently(self, timeout):
        for child in reversed(self.children):
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report(f'{child.name} did not stop in time; killing it')
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
