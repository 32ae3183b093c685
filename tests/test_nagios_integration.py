"""``gwcelery nagios`` and ``gwcelery local --status`` against a running
``gwcelery local --no-mock``, stopping its parts one at a time.

A part is stopped with SIGSTOP (and resumed with SIGCONT) rather than
killed: the deployment's supervisor would restart a killed child within a
second, and a frozen process is the harder case for the check, which must
not hang on it. At the end the whole deployment stops and the check must
say so just as quickly.
"""

import contextlib
import signal
import subprocess
import sys
import time

import psutil
import pytest

from gwcelery.tools.local import child_environment

from .test_local import LocalDeployment

pytestmark = pytest.mark.integration

#: Longest run (s) of the command, whatever is down or frozen. The checks
#: take at most five seconds (``nagios_timeout`` 2 s); the rest is the
#: interpreter importing the pipeline, about 2 s on an idle machine but
#: several times that when the deployment and other tests load the cores.
#: Without the time-outs a frozen part makes the command hang for good.
QUICK = 30


@pytest.fixture
def deployment(tmp_path):
    running = LocalDeployment(tmp_path / 'gwcelery-local', '--no-mock')
    children = []
    try:
        running.wait_for_line(r'gwcelery local is up', timeout=180)
        children = psutil.Process(running.process.pid).children(
            recursive=True)
        yield running
    finally:
        for child in children:  # none may stay frozen
            with contextlib.suppress(psutil.Error):
                child.resume()
        if running.process.poll() is None:
            try:
                running.stop()
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
        for child in psutil.wait_procs(children, timeout=10)[1]:
            child.kill()


def part(deployment, word):
    """The direct child of the deployment whose command line has `word`."""
    for child in psutil.Process(deployment.process.pid).children():
        if any(word in argument for argument in child.cmdline()):
            return child
    raise LookupError(word)


@contextlib.contextmanager
def frozen(process):
    """SIGSTOP `process` for the duration of the block."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def run(deployment, *args):
    """Run ``gwcelery ARGS`` with the deployment's configuration; return
    (exit code, output lines, seconds taken)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, '-m', 'gwcelery', *args],
        env=child_environment(str(deployment.data_dir)),
        capture_output=True, text=True, timeout=60)
    return (done.returncode, done.stdout.splitlines(),
            time.monotonic() - started)


def nagios(deployment, *args):
    """Run ``gwcelery nagios``; check that it printed one line quickly."""
    code, lines, elapsed = run(deployment, 'nagios', *args)
    print(f'gwcelery nagios {" ".join(args)}: {elapsed:.1f} s, exit {code}')
    assert len(lines) == 1, lines
    assert elapsed < QUICK, (elapsed, lines)
    return code, lines[0]


def status(deployment):
    """Run ``gwcelery local --status``; return the exit code and a dict
    part: (state, message)."""
    code, lines, _ = run(deployment, 'local', '--status', '--data-dir',
                         str(deployment.data_dir))
    return code, {line[:15].strip(): (line[16:24].strip(), line[25:])
                  for line in lines}


def wait_for_ok(deployment, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        code, line = nagios(deployment)
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, line
            return line
        time.sleep(1)


def test_each_part_stopped_in_turn(deployment):
    line = wait_for_ok(deployment)
    assert line.startswith(
        'NAGIOS OK: broker, workers, queues, dead letters, gcn.listen, '
        'gcn.broker, lvalert.listen, voevent broker, gracedb OK | ')
    assert 'queue_superevent=0;50;500;0' in line
    assert 'gcn.listen_age=' in line

    code, parts = status(deployment)
    assert code == 0, parts
    assert set(parts) == {'broker', 'workers', 'queues', 'dead letters',
                          'gcn.listen', 'gcn.broker', 'lvalert.listen',
                          'voevent broker', 'gracedb', 'flower', 'console'}
    assert {state for state, _ in parts.values()} == {'OK'}
    assert parts['voevent broker'][1].endswith(
        'accepts connections from 127.0.0.1')

    # Thresholds from the command line: every heartbeat is "late".
    code, line = nagios(deployment, '--heartbeat-warning', '0')
    assert code == 1, line
    assert line.startswith('NAGIOS WARNING: gcn.listen: last beat')

    with frozen(part(deployment, 'openmp@')):
        code, line = nagios(deployment)
        assert code == 2, line
        assert line.startswith(
            'NAGIOS CRITICAL: no worker consumes queue openmp (workers '
            'answering: ')
        code, parts = status(deployment)
        assert code == 2
        assert parts['workers'][0] == 'CRITICAL'
        assert parts['gracedb'][0] == 'OK'
    wait_for_ok(deployment, timeout=30)

    with frozen(part(deployment, 'gracedb-server')):
        code, line = nagios(deployment)
        assert code == 2, line
        assert 'NAGIOS CRITICAL: GraceDB http://127.0.0.1:' in line
        assert 'not answering (timed out)' in line
    wait_for_ok(deployment, timeout=30)

    with frozen(part(deployment, 'redis-server')):
        code, line = nagios(deployment)
        assert code == 2, line
        assert line.startswith('NAGIOS CRITICAL: broker redis://127.0.0.1:')
        assert 'Timeout' in line
        assert line.endswith('; 6 checks skipped | gracedb_time=' +
                             line.rsplit('gracedb_time=', 1)[1])
    wait_for_ok(deployment, timeout=60)

    # All down.
    deployment.stop()
    code, line = nagios(deployment)
    assert code == 2, line
    assert line.startswith('NAGIOS CRITICAL: broker redis://127.0.0.1:')
    assert 'Connection refused' in line
    code, parts = status(deployment)
    assert code == 2
    assert parts['flower'][0] == 'WARNING'
    assert parts['console'][0] == 'WARNING'
