"""A lock file that names its holder and dies with it.

``gwcelery local`` holds one in its data directory for as long as it
runs, so that a second deployment on the same directory refuses to start.
The lock is an :func:`fcntl.flock` on the file, which the kernel drops
when the holder's last descriptor closes, however the holder ends: a lock
left by a dead process is no lock, and the next :meth:`PidLock.acquire`
takes it over. The file also holds the holder's pid, for messages.

The descriptor is close-on-exec, so child processes never share the lock:
a holder that is killed frees it even if its children live on.
"""

import fcntl
import os
import time

__all__ = ('LOCK_NAME', 'LockHeld', 'PidLock', 'held_by')

#: Name of the lock file in the data directory of ``gwcelery local``.
LOCK_NAME = 'gwcelery-local.lock'

#: Seconds that :meth:`PidLock.acquire` and :func:`held_by` keep trying
#: while what they see may be another process's moment: a :func:`held_by`
#: probe holding the lock for a few microseconds, or a new holder that has
#: locked the file but not yet written its pid.
SETTLE_TIME = 0.5

_RETRY_INTERVAL = 0.01


class LockHeld(RuntimeError):
    """The lock belongs to another live process, whose pid is :attr:`pid`
    (None if it could not be read)."""

    def __init__(self, path, pid):
        self.path = path
        self.pid = pid
        holder = 'another process' if pid is None else f'process {pid}'
        super().__init__(f'{path} is locked by {holder}')


def _read_pid(fd):
    """The pid on the first line of the open file, or None."""
    data = os.pread(fd, 64, 0)
    try:
        pid = int(data.split(b'\n', 1)[0])
    except ValueError:
        return None
    # kill(0, ...) would test our own process group: no pid is that.
    return pid if pid > 0 else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _try_flock(fd, operation):
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd):
    """While the file is locked by someone else: the holder's pid, waiting
    up to :data:`SETTLE_TIME` for a new holder to write it."""
    deadline = time.monotonic() + SETTLE_TIME
    while True:
        pid = _read_pid(fd)
        # The pid of the previous, dead holder stays in the file until the
        # new one overwrites it.
        if (pid is not None and _alive(pid)) or time.monotonic() > deadline:
            return pid
        time.sleep(_RETRY_INTERVAL)


class PidLock:
    """An exclusive lock on the file at `path`, created if need be.

    Use :meth:`acquire` and :meth:`release`, or the lock as a context
    manager. Not reentrant.
    """

    def __init__(self, path):
        self.path = path
        self._fd = None

    def acquire(self):
        """Take the lock and write this process's pid into the file.

        Raises :class:`LockHeld` if a live process holds it.
        """
        if self._fd is not None:
            raise RuntimeError(f'{self.path} is already locked by this '
                               'object')
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + SETTLE_TIME
            # A holder keeps the lock; a held_by() probe lets go at once.
            while not _try_flock(fd, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    raise LockHeld(self.path, _holder(fd))
                time.sleep(_RETRY_INTERVAL)
            # Overwrite, then cut: a reader sees the old or the new pid on
            # the first line, never an empty file.
            data = f'{os.getpid()}\n'.encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self):
        """Let the lock go (nothing happens if it is not held).

        The file stays, with the pid in it: removing it would let a
        process that opened it before the removal lock a file that no one
        else sees any more.
        """
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def held_by(path):
    """Return the pid of the live process holding the lock at `path`, or
    None if no one holds it or the file does not exist.

    (A holder that is not a :class:`PidLock` and writes no pid also gives
    None, after :data:`SETTLE_TIME`.)
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        # A shared lock is granted only if no one holds the exclusive one.
        if _try_flock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _holder(fd)
    finally:
        os.close(fd)
