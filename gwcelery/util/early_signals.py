"""Remember a stop signal that comes while the ``gwcelery`` command starts.

Importing the pipeline takes seconds. Python turns a SIGINT into a
KeyboardInterrupt raised wherever the main thread happens to be, and
drops it when that is a ``__del__`` method or a weak-reference callback
run by the garbage collector, which runs often during imports ("Exception
ignored in ..."). A Ctrl-C in that window was then lost, and ``gwcelery
local`` went on to start every service.

:func:`record_while_starting`, called first thing when the package is
imported by the ``gwcelery`` command, installs handlers that note the
signal and then do what the previous handler did (raise
KeyboardInterrupt for SIGINT, end the process for SIGTERM). The command
checks :data:`received` once it has loaded (:func:`gwcelery.__main__.main`)
and ``gwcelery local`` takes it over with its own handlers
(:class:`gwcelery.util.supervisor.StopSignals`), so a dropped interrupt
still stops it. Only the command's own process is concerned: a program
that imports the package keeps its handlers.
"""

import os
import signal
import sys
import threading

#: The stop signal received while starting, or None.
received = None

#: Signals recorded.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: How ``sys.argv[0]`` reads while the package is imported by the command:
#: the console script, or ``python -m gwcelery`` (Python sets it to
#: ``'-m'`` until it has found the module to run).
COMMAND_NAMES = ('gwcelery', '-m')


def _chain(previous):
    def handle(signum, frame):
        global received
        received = signum
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
    return handle


def is_the_command():
    """Whether this process is the ``gwcelery`` command being started."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ''
    return (name in COMMAND_NAMES
            and threading.current_thread() is threading.main_thread())


def record_while_starting():
    """Record SIGINT and SIGTERM from now on, if this process is the
    ``gwcelery`` command (see the module docstring)."""
    if not is_the_command():
        return
    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None):
            continue  # ignored on purpose, or set outside Python
        signal.signal(signum, _chain(previous))
