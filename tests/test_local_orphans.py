"""``gwcelery local`` leaves nothing behind, however it is stopped, and
one data directory serves one deployment at a time.

Each test runs ``gwcelery local --no-mock`` as a child process, as
:mod:`tests.test_local` does, and looks for leftovers by the data
directory: every process of a deployment names it on its command line or
in its environment (``PYTHONPATH``), wherever it was reparented.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import psutil
import pytest

from gwcelery.tools.local import http_ok, read_config
from gwcelery.util.pidlock import LOCK_NAME, held_by

from .test_local import LocalDeployment

pytestmark = pytest.mark.integration

#: Seconds within which the children must go after the supervisor.
ORPHAN_TIMEOUT = 10

#: Direct children of a full deployment: Redis, GraceDB, the mock GCN
#: server, four workers, Beat and Flower.
CHILDREN = 9


def processes_of(data_dir):
    """The live processes (not zombies) of the deployment in `data_dir`,
    other than this one."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            text = ' '.join(process.cmdline())
            text += ' ' + process.environ().get('PYTHONPATH', '')
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if data_dir in text:
            found.append(process)
    return found


def wait_for_no_processes(data_dir, timeout):
    deadline = time.monotonic() + timeout
    while processes_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_of(data_dir)


def kill_leftovers(data_dir):
    """Whatever a failing test leaves, the test run does not."""
    for process in processes_of(data_dir):
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def ports_of(deployment, data_dir):
    """The TCP ports of the deployment: those given on its command line,
    and Redis's and the mock GCN server's if it got to write them."""
    ports = set(deployment.ports.values())
    if os.path.exists(os.path.join(data_dir, 'gwcelery_local_config.py')):
        settings = read_config(data_dir)
        ports.add(urllib.parse.urlsplit(settings['broker_url']).port)
        ports.add(settings['gcn_remote_port'])
    return ports


def listening(ports):
    """Those of `ports` on which a server still listens."""
    busy = set()
    for port in ports:
        with socket.socket() as sock:
            # As a server would: connections in TIME_WAIT do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                busy.add(port)
    return busy


def children_of(pid):
    try:
        return psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []


def wait_for_moment(deployment, moment, timeout=180):
    """Return once `gwcelery local` has reached `moment` of its start."""
    deadline = time.monotonic() + timeout
    if isinstance(moment, float):
        time.sleep(moment)
        return
    if moment == 'up':
        deployment.wait_for_line(r'gwcelery local is up', timeout=timeout)
        return
    reached = {
        # Redis started, nothing else yet.
        'redis': lambda children: any(
            child.name() == 'redis-server' for child in children),
        # Children starting.
        'children': lambda children: len(children) >= 4,
        # All started; waiting for the workers to answer.
        'workers': lambda children: len(children) >= CHILDREN,
    }[moment]
    while time.monotonic() < deadline:
        assert deployment.process.poll() is None, deployment.lines
        try:
            if reached(children_of(deployment.process.pid)):
                return
        except psutil.NoSuchProcess:  # a child came and went
            pass
        time.sleep(0.02)
    pytest.fail(f'gwcelery local did not reach {moment!r}')


#: Longest wait (s) for gwcelery local to stop after a stop signal: three
#: stop ranks of 15 s each, on a loaded machine.
STOP_LIMIT = 120


def dead_pid():
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


@pytest.mark.parametrize('signum,moment', [
    (signal.SIGINT, 0.5),
    (signal.SIGTERM, 'redis'),
    (signal.SIGINT, 'children'),
    (signal.SIGTERM, 'workers'),
    (signal.SIGTERM, 'up'),
], ids=['SIGINT-0.5s', 'SIGTERM-redis', 'SIGINT-children',
        'SIGTERM-workers', 'SIGTERM-up'])
def test_stop_signal_during_start_up_stops_everything(tmp_path, signum,
                                                      moment):
    data_dir = str(tmp_path / 'local')
    deployment = LocalDeployment(data_dir, '--no-mock')
    try:
        wait_for_moment(deployment, moment)
        deployment.process.send_signal(signum)
        # One signal is enough, even while it imports: one that Python
        # dropped is remembered (tests/test_early_signals.py). A limit,
        # not a measure: the stop goes rank by rank, each allowed 15 s
        # before its children are killed.
        try:
            deployment.process.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            while not deployment._queue.empty():
                deployment.lines.append(deployment._queue.get_nowait())
            pytest.fail(f'still running {STOP_LIMIT} s after the signal:\n'
                        + '\n'.join(deployment.lines))
        assert wait_for_no_processes(data_dir, ORPHAN_TIMEOUT) == []
        assert listening(ports_of(deployment, data_dir)) == set()
        assert held_by(os.path.join(data_dir, LOCK_NAME)) is None
        if not isinstance(moment, float):
            # It was running gwcelery local, not still importing: an
            # orderly stop.
            assert deployment.process.returncode == 0, deployment.lines
            deployment.wait_for_line(r'Stopping\.\.\.', timeout=5)
    finally:
        deployment.process.kill()
        deployment.process.wait()
        kill_leftovers(data_dir)


def test_one_deployment_per_data_dir_and_none_outlives_sigkill(tmp_path):
    """A stale lock is taken over; a second start on the same data
    directory is refused at once; SIGKILL of the supervisor takes every
    process with it."""
    data_dir = str(tmp_path / 'local')
    lock_path = os.path.join(data_dir, LOCK_NAME)
    os.makedirs(data_dir)
    with open(lock_path, 'w') as f:
        f.write(f'{dead_pid()}\n')  # left by a deployment that died
    first = LocalDeployment(data_dir, '--no-mock')
    try:
        first.wait_for_line(r'gwcelery local is up', timeout=180)
        assert held_by(lock_path) == first.process.pid
        descendants = psutil.Process(first.process.pid).children(
            recursive=True)
        assert len(descendants) > CHILDREN  # with the pool processes

        # Both modes refuse, before starting anything.
        for mode in ([], ['--eager']):
            second = LocalDeployment(data_dir, '--no-mock', *mode)
            try:
                start = time.monotonic()
                assert second.process.wait(60) != 0
                took = time.monotonic() - start
                second.wait_for_line(
                    rf'another gwcelery local \(process {first.process.pid}'
                    r'\) is running with --data-dir', timeout=5)
                assert took < 30, took  # the time to import gwcelery
                assert listening(second.ports.values()) == set()
            finally:
                second.process.kill()
                second.process.wait()
        assert first.process.poll() is None
        assert http_ok(first.gracedb_url)
        assert psutil.Process(first.process.pid).children(recursive=True) \
            == descendants
        ports = ports_of(first, data_dir)
        assert listening(ports) == ports

        first.process.kill()
        first.process.wait()
        gone, alive = psutil.wait_procs(descendants, timeout=ORPHAN_TIMEOUT)
        assert [process for process in alive
                if process.status() != psutil.STATUS_ZOMBIE] == []
        assert processes_of(data_dir) == []
        assert listening(ports) == set()
        assert held_by(lock_path) is None
    finally:
        first.process.kill()
        first.process.wait()
        kill_leftovers(data_dir)
