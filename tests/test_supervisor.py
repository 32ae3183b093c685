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

from gwcelery.tools.local_children import StatusFile, children_row
from gwcelery.tools.nagios import State
from gwcelery.util.pidlock import LOCK_NAME, PidLock
from gwcelery.util.redis_server import RedisServer
from gwcelery.util.supervisor import (
    Child,
    StopSignals,
    Supervisor,
    describe_status,
)

from .listener_support import wait_for

#: A supervisor with two children (one that spawns a grandchild in its
#: process group) and a Redis server; it prints their pids, then waits.
SUPERVISOR = '''
import json, os, sys, time
from gwcelery.tools.local_children import StatusFile, children_row
from gwcelery.tools.nagios import State
from gwcelery.util.pidlock import LOCK_NAME, PidLock
from gwcelery.util.redis_server import RedisServer
from gwcelery.tools.local_children import StatusFile, children_row
from gwcelery.tools.nagios import State
from gwcelery.util.pidlock import LOCK_NAME, PidLock
from gwcelery.util.redis_server import RedisServer
from gwcelery.util.supervisor import (
    Child,
    StopSignals,
    Supervisor,
    describe_status,
)
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



@pytest.fixture
def supervisor():
    """A supervisor that keeps its reports in :attr:`reports` and restarts
    quickly; every child it has is stopped however the test ends."""
    reports = []
    running = Supervisor(report=reports.append, restart_delay=0.1,
                         max_restart_delay=0.8, stable_after=5.0)
    running.reports = reports
    yield running
    running.stop(timeout=5)


def supervise_until(supervisor, predicate, timeout):
    """Run the supervisor's checks until `predicate()` is true."""
    return wait_for(lambda: supervisor.check() and False or predicate(),
                    timeout)


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


def test_a_killed_child_is_reaped_reported_and_restarted(supervisor,
                                                         tmp_path):
    """SIGKILL leaves a zombie until someone waits for it: the supervisor's
    check reaps it, says how it ended, and starts the child again."""
    child = supervisor.add(Child('sleeper', ['sleep', '60'], None,
                                 str(tmp_path / 'sleeper.log')))
    first = psutil.Process(child.pid)
    first.kill()
    assert wait_for(lambda: first.status() == psutil.STATUS_ZOMBIE, 5)
    assert supervise_until(supervisor, lambda: child.restarts == 1, 5)
    assert not psutil.pid_exists(first.pid) or \
        first.status() != psutil.STATUS_ZOMBIE
    assert child.pid != first.pid
    assert psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE
    assert child.state == 'running'
    exited, restarted = supervisor.reports
    assert exited.startswith(f'sleeper (pid {first.pid}) was killed by '
                             'SIGKILL after ')
    assert 'restarting it in 0.2 s' in exited  # a quick exit: doubled
    assert restarted == f'sleeper restarted (pid {child.pid}, restart 1)'


def test_a_child_that_keeps_exiting_is_backed_off(supervisor, tmp_path):
    """Exits within `stable_after` of the start double the wait, up to
    `max_restart_delay`, rather than a restart at every check."""
    supervisor.max_restart_delay = 0.4
    child = supervisor.add(Child('failing', ['sh', '-c', 'exit 3'], None,
                                 str(tmp_path / 'failing.log')))
    starts = [time.monotonic()]

    def check():
        if supervisor.check():
            starts.append(time.monotonic())

    wait_for(lambda: check() or len(starts) == 7, timeout=15, interval=0.01)
    assert len(starts) == 7, supervisor.reports
    gaps = [later - earlier
            for earlier, later in zip(starts, starts[1:], strict=False)]
    # The first exit is already a quick one: 0.1 s doubled.
    for gap, wanted in zip(gaps, [0.2, 0.4, 0.4, 0.4, 0.4, 0.4],
                           strict=True):
        assert wanted <= gap < wanted + 0.3, gaps
    assert child.quick_exits == 6
    exits = [line for line in supervisor.reports if 'exited' in line]
    assert len(exits) == 6
    assert 'exited with status 3 after 0.0 s; restarting it in 0.2 s ' \
        '(see' in exits[0]
    assert exits[-1].endswith(
        'restarting it in 0.4 s; backing off: 6 exits in a row within 5 s '
        f'of a start (see {child.logfile})')


def test_a_child_that_ran_long_enough_is_restarted_at_once(supervisor,
                                                           tmp_path):
    """The back-off is for children that cannot run: one that ran longer
    than `stable_after` waits `restart_delay` again."""
    supervisor.stable_after = 0.3
    child = supervisor.add(Child('sleeper', ['sleep', '60'], None,
                                 str(tmp_path / 'sleeper.log')))
    child.quick_exits = 3  # as if it had failed before
    time.sleep(0.4)
    os.kill(child.pid, signal.SIGKILL)
    assert supervise_until(supervisor, lambda: child.restarts == 1, 5)
    assert child.quick_exits == 0
    assert 'restarting it in 0.1 s (see' in supervisor.reports[0]


def test_a_stop_that_kills_a_child_says_which(supervisor, tmp_path):
    child = supervisor.add(Child(
        'stubborn', [sys.executable, '-c', STUBBORN], None,
        str(tmp_path / 'stubborn.log')))
    processes = [psutil.Process(child.pid)]
    try:
        # Its SIGTERM handler is in place once it has started its child.
        assert wait_for(lambda: processes[0].children(), 10)
        processes += processes[0].children()
        supervisor.stop(timeout=0.5)
        assert child.poll() == -signal.SIGKILL
        assert supervisor.reports == [
            f'stubborn (pid {child.pid}) did not stop within 0.5 s of '
            f'SIGTERM; killing it (see {child.logfile})']
        assert wait_gone(processes, timeout=5) == []
    finally:
        kill_all(processes)


#: A child that writes when it got SIGTERM and when it exits, to FILE.
SIGNAL_LOGGER = (
    'import signal, sys, time\n'
    'def stop(signum, frame):\n'
    '    with open(sys.argv[1], "a") as f:\n'
    '        f.write(f"{sys.argv[2]} term {time.time()}\\n")\n'
    '    time.sleep(float(sys.argv[3]))\n'
    '    with open(sys.argv[1], "a") as f:\n'
    '        f.write(f"{sys.argv[2]} exit {time.time()}\\n")\n'
    '    sys.exit(0)\n'
    'signal.signal(signal.SIGTERM, stop)\n'
    'print("ready", flush=True)\n'
    'time.sleep(60)\n')


def test_servers_stop_after_their_clients(supervisor, tmp_path):
    """Ranks: a server (rank 1) gets SIGTERM only once its clients (rank 0)
    have exited, as Redis must outlive the workers' warm shutdown."""
    events = tmp_path / 'events'
    for name, rank, linger in [('server', 1, '0'), ('client', 0, '0.3')]:
        logfile = tmp_path / f'{name}.log'
        supervisor.add(Child(
            name, [sys.executable, '-c', SIGNAL_LOGGER, str(events), name,
                   linger], None, str(logfile), stop_rank=rank,
            ready=lambda logfile=logfile: b'ready' in logfile.read_bytes()),
            timeout=10)
    supervisor.stop(timeout=5)
    lines = [line.split() for line in events.read_text().splitlines()]
    assert [(name, what) for name, what, _ in lines] == [
        ('client', 'term'), ('client', 'exit'),
        ('server', 'term'), ('server', 'exit')]
    assert supervisor.reports == []


def test_redis_restarted_by_the_supervisor_keeps_its_port_and_data(
        supervisor, tmp_path):
    import redis

    server = RedisServer(data_dir=str(tmp_path / 'redis'), persistent=True)
    child = supervisor.add(server.child(), timeout=10)
    client = redis.Redis.from_url(server.url)
    try:
        client.set('kept', b'yes')
        first = child.pid
        os.kill(first, signal.SIGKILL)
        assert supervise_until(
            supervisor, lambda: child.restarts == 1 and server.answers(), 10)
        assert child.pid != first
        assert client.get('kept') == b'yes'
        assert 'redis (pid' in supervisor.reports[0]
    finally:
        client.close()


def test_local_status_shows_a_child_that_is_down(supervisor, tmp_path):
    """What ``gwcelery local --status`` adds: nothing while every child
    runs, a row for a child waiting for its restart, and a row when no
    deployment runs on the data directory."""
    data_dir = str(tmp_path)
    lock = PidLock(os.path.join(data_dir, LOCK_NAME)).acquire()
    try:
        child = supervisor.add(Child('sleeper', ['sleep', '60'], None,
                                     str(tmp_path / 'sleeper.log')))
        status_file = StatusFile(data_dir)
        status_file.update(supervisor)
        assert children_row(data_dir, State) is None
        os.kill(child.pid, signal.SIGKILL)
        assert supervise_until(
            supervisor, lambda: child.state == 'restarting', 5)
        status_file.update(supervisor)
        part, state, message = children_row(data_dir, State)
        assert (part, state) == ('children', State.WARNING)
        assert message.startswith(
            'sleeper was killed by SIGKILL, restart 1 in '), message
    finally:
        lock.release()
    assert children_row(data_dir, State) == (
        'children', State.CRITICAL,
        'gwcelery local (the supervisor) is not running')


def test_describe_status():
    assert describe_status(None) == 'is running'
    assert describe_status(0) == 'exited with status 0'
    assert describe_status(-signal.SIGTERM) == 'was killed by SIGTERM'
