"""A stop signal that comes while the ``gwcelery`` command loads is not
lost (:mod:`gwcelery.util.early_signals`), even when Python drops the
KeyboardInterrupt it raised."""

import signal
import subprocess
import sys
import textwrap

#: A ``gwcelery`` command that gets a SIGINT while it imports the
#: pipeline, at a moment where Python drops the KeyboardInterrupt: in a
#: callback of the garbage collector, as in a ``__del__``.
DROPPED_INTERRUPT = textwrap.dedent('''\
    import gc, os, signal, sys
    sys.argv[0] = 'gwcelery'
    fired = []

    def interrupt_during_collection(phase, info):
        recording = 'gwcelery.util.early_signals' in sys.modules and \\
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        if phase == 'start' and recording and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10000):  # the handler runs here, in the callback
                pass

    gc.callbacks.append(interrupt_during_collection)
    from gwcelery.__main__ import main
    print('imported', flush=True)
    main(['--help'])
    print('ran the command', flush=True)
''')


def test_an_interrupt_dropped_while_loading_still_stops_the_command():
    done = subprocess.run([sys.executable, '-c', DROPPED_INTERRUPT],
                          capture_output=True, text=True, timeout=120)
    assert 'KeyboardInterrupt' in done.stderr  # raised, and dropped
    assert 'Exception ignored' in done.stderr
    assert done.stdout.splitlines() == ['imported']
    assert done.returncode == 128 + signal.SIGINT


def test_a_program_importing_the_package_keeps_its_handlers():
    done = subprocess.run(
        [sys.executable, '-c',
         'import signal, gwcelery; '
         'print(signal.getsignal(signal.SIGINT) is '
         'signal.default_int_handler, '
         'signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)'],
        capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ['True', 'True'], done.stderr
