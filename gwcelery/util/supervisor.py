"""Run a set of child processes, restart the ones that die, stop them all.

The process manager behind ``gwcelery local``.
"""

import logging
import os
import signal
import subprocess
import time

log = logging.getLogger(__name__)


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
    """

    def __init__(self, name, argv, env, logfile):
        self.name = name
        self.argv = argv
        self.env = env
        self.logfile = logfile
        self.process = None
        self.restarts = 0

    def start(self):
        """Start the process, appending its output to :attr:`logfile`."""
        with open(self.logfile, 'ab') as out:
            # A new session: Ctrl-C in the terminal reaches the supervisor
            # only, which then stops the children in order.
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
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
        child.start()
        self.children.append(child)
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
            time.sleep(self.restart_delay)
            child.restarts += 1
            child.start()
            restarted.append(child)
        return restarted

    def stop(self, timeout=15):
        """Stop every child, the last started first.

        Each gets SIGTERM (a Celery worker then does a warm shutdown); a
        child still running after `timeout` seconds in all is killed.
        """
        self._stopping = True
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
        """Supervise until SIGINT or SIGTERM, then stop every child."""
        def interrupt(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            while True:
                self.check()
                if on_tick is not None:
                    on_tick()
                time.sleep(poll_interval)
        except KeyboardInterrupt:
            self.report('Stopping...')
        finally:
            self.stop()
            signal.signal(signal.SIGTERM, previous)
