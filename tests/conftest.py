"""Shared fixtures: a private Redis server and the app pointed at it."""

import os
import subprocess
import sys
import threading
import time

import kombu.pools
import pytest

from gwcelery import app
from gwcelery.util.redis_server import RedisServer

#: Fixture modules of the subsystems (``tests/fixtures/*.py``).
pytest_plugins = ['tests.fixtures.orchestrator', 'tests.fixtures.gracedb',
                  'tests.fixtures.xmpp', 'tests.fixtures.beat']

#: Directory of the real payloads the tests read (GCN notices in ``gcn/``,
#: GraceDB uploads and alert messages in ``gracedb/``).
DATA_DIR = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='session')
def redis_server(tmp_path_factory):
    """A real redis-server on a free port of 127.0.0.1 for the session."""
    server = RedisServer(data_dir=str(tmp_path_factory.mktemp('redis')))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """URL of an emptied database of the session's Redis server."""
    import redis
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def drop_connections(celery_app):
    """Forget the app's broker and backend connections so that the next
    use connects to the currently configured URLs."""
    kombu.pools.reset()
    celery_app._after_fork()
    celery_app._backend_cache = None
    celery_app._local = threading.local()


@pytest.fixture
def broker_app(redis_url, monkeypatch):
    """The gwcelery app using the private Redis as broker and backend."""
    for key in ('broker_url', 'result_backend'):
        monkeypatch.setitem(app.conf, key, redis_url)
    monkeypatch.setenv('CELERY_BROKER_URL', redis_url)
    monkeypatch.setenv('CELERY_RESULT_BACKEND', redis_url)
    drop_connections(app)
    yield app
    drop_connections(app)


class Worker:
    """A ``gwcelery worker`` subprocess."""

    def __init__(self, name, queues, env, logfile, extra=()):
        self.name = name
        self.logfile = logfile
        argv = [sys.executable, '-m', 'gwcelery', 'worker',
                '--hostname', f'{name}@%h', '--queues', queues,
                '--loglevel', 'INFO', '--without-mingle',
                '--without-gossip', *extra]
        with open(logfile, 'wb') as out:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                cwd=os.path.join(os.path.dirname(__file__), os.pardir))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self):
        with open(self.logfile) as f:
            return f.read()


@pytest.fixture
def worker_settings(broker_app):
    """Settings that :func:`start_worker` writes into the workers' config.

    Starts as the broker and backend URLs; a test (or another fixture,
    e.g. the local GraceDB server's) adds what its workers must see,
    before starting them.
    """
    return {'broker_url': broker_app.conf.broker_url,
            'result_backend': broker_app.conf.result_backend}


@pytest.fixture
def start_worker(broker_app, worker_settings, tmp_path):
    """Start real worker processes against the private Redis.

    Call it as ``start_worker(name, queues, *extra_args)``; it waits until
    the worker answers a ping and stops every worker after the test. The
    workers load a configuration module written from
    :func:`worker_settings` on top of the ``local`` preset.
    """
    from gwcelery.tools.local import child_environment, write_config

    workers = []
    config_dir = tmp_path / 'worker-config'
    config_dir.mkdir()

    def start(name, queues, *extra):
        write_config(str(config_dir), worker_settings)
        env = child_environment(str(config_dir))
        worker = Worker(name, queues, env, str(tmp_path / f'{name}.log'),
                        extra)
        workers.append(worker)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = broker_app.control.ping(
                destination=[f'{name}@{os.uname().nodename}'], timeout=0.5)
            if replies:
                return worker
            if worker.process.poll() is not None:
                break
        pytest.fail(f'worker {name} did not start:\n{worker.log()}')

    yield start
    for worker in workers:
        worker.stop()
