"""The lock file of ``gwcelery local``'s data directory."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from gwcelery.util.pidlock import LOCK_NAME, LockHeld, PidLock, held_by

#: A process that takes the lock at argv[1], says so, starts a long-lived
#: child that inherits every inheritable descriptor, and waits.
HOLDER = '''
import subprocess, sys, time
from gwcelery.util.pidlock import PidLock
PidLock(sys.argv[1]).acquire()
child = subprocess.Popen(['sleep', '60'], close_fds=False)
print(child.pid, flush=True)
time.sleep(60)
'''


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / LOCK_NAME)


def dead_pid():
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_acquire_writes_our_pid_and_release_frees(path):
    assert held_by(path) is None  # no file yet
    lock = PidLock(path).acquire()
    assert open(path).read() == f'{os.getpid()}\n'
    assert held_by(path) == os.getpid()
    lock.release()
    assert held_by(path) is None
    lock.release()  # a second release does nothing


def test_second_lock_is_refused_with_holder_pid(path):
    with PidLock(path):
        with pytest.raises(LockHeld) as refused:
            PidLock(path).acquire()
    assert refused.value.pid == os.getpid()
    assert f'process {os.getpid()}' in str(refused.value)
    assert path in str(refused.value)
    with PidLock(path):  # released by the with block
        pass


def test_stale_lock_file_is_taken_over(path):
    pid = dead_pid()
    with open(path, 'w') as f:
        f.write(f'{pid}\n')
    assert held_by(path) is None
    with PidLock(path):
        assert held_by(path) == os.getpid()
        assert open(path).read() == f'{os.getpid()}\n'


def test_killed_holder_frees_the_lock_though_its_child_lives(path):
    """SIGKILL a holder whose child would keep any inherited descriptor:
    the lock must go with the holder."""
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, path],
                              stdout=subprocess.PIPE, text=True)
    grandchild = None
    try:
        grandchild = int(holder.stdout.readline())
        assert held_by(path) == holder.pid
        with pytest.raises(LockHeld) as refused:
            PidLock(path).acquire()
        assert refused.value.pid == holder.pid
        holder.kill()
        holder.wait()
        os.kill(grandchild, 0)  # still alive
        with PidLock(path):
            assert held_by(path) == os.getpid()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)


def test_held_by_probes_do_not_make_acquire_fail(path):
    """held_by() holds a shared lock for an instant; a concurrent
    acquire() must wait it out rather than report a holder."""
    stop = threading.Event()
    seen = set()

    def probe():
        while not stop.is_set():
            seen.add(held_by(path))

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(200):
            with PidLock(path):
                pass
    finally:
        stop.set()
        prober.join()
    assert seen <= {None, os.getpid()}
