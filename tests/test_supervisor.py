"""The process supervisor: no child outlives it, whatever happens."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from gwcelery.util.supervisor import Child, StopSignals, Supervisor

#: A supervisor with two children (one that spawns a grandchild in its
#: process group) and a Redis server; it prints their pids, then waits.
SUPERVISOR = '''
import json, os, sys, time
from gwcelery.util.redis_server import RedisServer
from gwcelery.util.supervisor import Child, StopSignals, Supervisor
log = sys.argv[1]
redis = RedisServer().start()
supervisor = Supervisor(report=lambda message: None)
for name in ('one', 'two'):
    supervisor.add(Child(name, ['sleep', '60'], dict(os.environ), log))
print(json.dumps([redis.process.pid] +
                 [child.pid for child in supervisor.children]), flush=True)
time.sleep(60)
'''

#: A child that ignores SIGTERM and leaves a grandchild in its group.
STUBBORN = ('import signal, subprocess, time; '
            'signal.signal(signal.SIGTERM, signal.SIG_IGN); '
            'subprocess.Popen(["sleep", "60"]); time.sleep(60)')


def alive(processes):
    """Those of `processes` still running (zombies are dead)."""
    running = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def wait_gone(processes, timeout):
    deadline = time.monotonic() + timeout
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(processes)


def kill_all(processes):
    for process in alive(processes):
        process.kill()


def test_children_and_redis_die_with_a_killed_supervisor(tmp_path):
    supervisor = subprocess.Popen(
        [sys.executable, '-c', SUPERVISOR, str(tmp_path / 'child.log')],
        stdout=subprocess.PIPE, text=True)
    children = []
    try:
        pids = json.loads(supervisor.stdout.readline())
        children = [psutil.Process(pid) for pid in pids]
        assert [child.name() for child in children] == \
            ['redis-server', 'sleep', 'sleep']
        supervisor.kill()
        supervisor.wait()
        assert wait_gone(children, timeout=10) == []
    finally:
        supervisor.kill()
        supervisor.wait()
        supervisor.stdout.close()
        kill_all(children)


def test_stop_kills_what_is_left_in_a_child_process_group(tmp_path):
    """A child that exits on SIGTERM but leaves a process behind in its
    group (as a worker leaves a busy pool process)."""
    supervisor = Supervisor(report=lambda message: None)
    child = supervisor.add(Child(
        'leaves', ['sh', '-c', 'sleep 60 & exec sleep 60'],
        dict(os.environ), str(tmp_path / 'child.log')))
    group = []
    try:
        deadline = time.monotonic() + 10
        while len(group) < 1 and time.monotonic() < deadline:
            group = psutil.Process(child.pid).children()
            time.sleep(0.05)
        assert group, 'the child started no background process'
        supervisor.stop(timeout=10)
        assert child.poll() is not None
        assert wait_gone(group, timeout=5) == []
    finally:
        kill_all(group)
        child.kill()


def test_second_interrupt_during_stop_kills_every_child(tmp_path):
    supervisor = Supervisor(report=lambda message: None)
    child = supervisor.add(Child(
        'stubborn', [sys.executable, '-c', STUBBORN], dict(os.environ),
        str(tmp_path / 'child.log')))
    processes = [psutil.Process(child.pid)]

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(
        2.0, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        time.sleep(1.0)  # let it install its SIGTERM handler
        processes += processes[0].children()
        timer.start()
        start = time.monotonic()
        supervisor.stop(timeout=30)
        assert time.monotonic() - start < 10
        assert child.poll() == -signal.SIGKILL
        assert wait_gone(processes, timeout=5) == []
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
        child.kill()
        kill_all(processes)


def test_a_child_whose_parent_died_before_prctl_kills_itself():
    """The race between fork and prctl, made certain: the function is
    prepared in one process and used in its child, so the new process's
    parent is not the one it expects, as if that one had died."""
    script = textwrap.dedent('''\
        import os, subprocess
        from gwcelery.util.supervisor import parent_death_signal
        preexec = parent_death_signal()
        pid = os.fork()
        if pid == 0:
            status = subprocess.Popen(['sleep', '60'],
                                      preexec_fn=preexec).wait()
            os._exit(-status)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        ''')
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == str(int(signal.SIGKILL)), result.stderr


@pytest.mark.integration
def test_busy_pool_process_dies_with_its_killed_worker(start_worker,
                                                       broker_app):
    """The supervisor's grandchildren: a worker's pool process in the
    middle of a long task goes when the worker is SIGKILLed (as by the
    supervisor's death), rather than when its task ends. (Celery's
    prefork pool sets PR_SET_PDEATHSIG in each pool process.)"""
    from . import supervisor_tasks

    worker = start_worker('busy', 'celery', '--include',
                          'tests.supervisor_tasks', '--concurrency', '1')
    supervisor_tasks.sleep_for.delay(120)
    destination = [f'busy@{os.uname().nodename}']
    pool_pid = None
    deadline = time.monotonic() + 30
    while pool_pid is None and time.monotonic() < deadline:
        active = broker_app.control.inspect(
            destination=destination, timeout=1).active() or {}
        tasks = [task for tasks in active.values() for task in tasks]
        pool_pid = tasks[0]['worker_pid'] if tasks else None
    assert pool_pid, 'the task did not start'
    pool = psutil.Process(pool_pid)
    try:
        worker.process.kill()
        worker.process.wait()
        assert wait_gone([pool], timeout=5) == []
    finally:
        kill_all([pool])


# The dropped KeyboardInterrupt is the point of the test.
@pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')
def test_stop_signal_that_python_drops_is_raised_at_the_next_checkpoint():
    """SIGTERM during a ``__del__`` (as during an at-fork hook of
    ``subprocess``): Python prints the KeyboardInterrupt and goes on."""
    class RaisesSignalWhenCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)

    previous = {signum: signal.getsignal(signum)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    stop_signals = StopSignals().install()
    try:
        stop_signals.raise_if_received()  # nothing yet
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        stop_signals.received = None
        RaisesSignalWhenCollected()  # collected at once: the raise is lost
        assert stop_signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            stop_signals.raise_if_received()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
