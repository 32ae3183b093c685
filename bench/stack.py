"""The part of the local stack that the path benchmarks share.

:class:`Stack` starts a private Redis, ``gwcelery gracedb-server`` with
its alerts over Redis, and workers, each a subprocess logging to a file of
the work directory; the LVAlert listener runs on a queue of its own
(:data:`LISTENER_QUEUE`) so that a benchmark runs only the handlers it
measures. :class:`AlertWatcher` reads the server's alerts in a thread.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import psutil
import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

from gwcelery import app  # noqa: E402
from gwcelery.tasks import lvalert  # noqa: E402
from gwcelery.tools.local import child_environment, write_config  # noqa
from gwcelery.util.alert_stream import next_published  # noqa: E402
from gwcelery.util.redis_server import RedisServer, free_port  # noqa: E402

LISTENER_QUEUE = 'bench-lvalert'


def stop_processes(processes, timeout=20):
    """SIGTERM each of `processes` (:class:`subprocess.Popen`), all at
    once; SIGKILL one still running `timeout` seconds later."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Stack:
    """Redis, the GraceDB server and the given workers, as subprocesses.

    Parameters
    ----------
    workdir : str
        Directory of the data, the written configuration and the logs
        (``{name}.log``).
    workers : list
        ``(name, queue, pool, concurrency)`` of each worker besides the
        listener's.
    settings : dict
        Configuration on top of the stack's own (broker, GraceDB, LVAlert
        over Redis, the listener's route).
    """

    def __init__(self, workdir, workers, settings=None):
        self.workdir = workdir
        self.processes = {}
        self.redis = RedisServer(data_dir=os.path.join(workdir, 'redis'))
        self.redis.start()
        port = free_port()
        self.gracedb_url = f'http://127.0.0.1:{port}/api/'
        config = {
            'broker_url': self.redis.url, 'result_backend': self.redis.url,
            'gracedb_url': self.gracedb_url,
            'gracedb_host': f'127.0.0.1:{port}',
            'lvalert_transport': 'redis', 'lvalert_redis_url': self.redis.url,
            'gracedb_server_redis_url': self.redis.url,
            'task_create_missing_queues': True,
            **(settings or {}),
        }
        config['task_routes'] = {
            'gwcelery.tasks.lvalert.listen': {'queue': LISTENER_QUEUE},
            **config.get('task_routes', {})}
        write_config(workdir, config)
        app.conf.update(config)
        self.env = child_environment(workdir)
        try:
            self.start('gracedb-server', 'gracedb-server', '--host',
                       '127.0.0.1', '--port', str(port), '--data-dir',
                       os.path.join(workdir, 'gracedb'), '--alerts', 'redis',
                       '--log-level', 'WARNING')
            self.wait_for_port(port)
            for name, queue, pool, concurrency in [
                    ('listener', LISTENER_QUEUE, 'prefork', 1), *workers]:
                self.start(name, 'worker', '--hostname', f'{name}@%h',
                           '--queues', queue, '--concurrency',
                           str(concurrency), '--pool', pool, '--loglevel',
                           'INFO', '--without-mingle', '--without-gossip')
            self.wait_for_workers(
                {'listener', *(worker[0] for worker in workers)})
            lvalert.listen.delay()  # what Beat does every second
            self.wait_for_subscription()
        except BaseException:
            self.stop()
            raise

    def start(self, name, *args):
        with open(self.logfile(name), 'wb') as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, '-m', 'gwcelery', *args], env=self.env,
                stdout=out, stderr=subprocess.STDOUT)

    def logfile(self, name):
        return os.path.join(self.workdir, f'{name}.log')

    def cpu_seconds(self):
        """CPU time used so far by each part of the stack (a process
        and its children), and by this process (``uploads``)."""
        pids = {name: process.pid for name, process in self.processes.items()}
        pids['redis'] = self.redis.process.pid
        used = {}
        for name, pid in pids.items():
            process = psutil.Process(pid)
            used[name] = sum(
                sum(part.cpu_times()[:2])
                for part in [process, *process.children(recursive=True)])
        used['uploads'] = sum(psutil.Process().cpu_times()[:2])
        return used

    @staticmethod
    def wait_for_port(port, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(('127.0.0.1', port), 1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f'nothing listens on port {port}')

    @staticmethod
    def wait_for_workers(names, timeout=120):
        deadline = time.monotonic() + timeout
        answered = set()
        while answered != names:
            if time.monotonic() > deadline:
                raise RuntimeError(f'workers {names} did not all start')
            for reply in app.control.ping(timeout=0.5) or []:
                answered.update(node.split('@')[0] for node in reply)

    def wait_for_subscription(self, timeout=60):
        client = redis.Redis.from_url(self.redis.url)
        channel = app.conf['lvalert_redis_channel_prefix'] + 'superevent'
        deadline = time.monotonic() + timeout
        try:
            while not client.pubsub_numsub(channel)[0][1]:
                if time.monotonic() > deadline:
                    raise RuntimeError('the LVAlert listener did not '
                                       'subscribe')
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self):
        stop_processes(reversed(self.processes.values()))
        self.redis.stop()


class AlertWatcher:
    """Read the alerts that the server publishes, in a thread, and hand
    each (decoded) with its arrival time (``time.perf_counter``) to
    :meth:`on_alert` until :meth:`close`; only those whose text contains
    `marker`, if given (decoding every alert costs the benchmark's
    process, whose CPU time counts as the uploads')."""

    def __init__(self, url, marker=None):
        self.marker = marker
        self.stopping = threading.Event()
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(app.conf['lvalert_redis_channel_prefix'] + '*')
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_alert(self, alert, arrived):
        raise NotImplementedError

    def run(self):
        while not self.stopping.is_set():
            message = next_published(self.pubsub, 0.2)
            if message is None:
                continue
            arrived = time.perf_counter()
            if self.marker is None or self.marker in message['data']:
                self.on_alert(json.loads(message['data']), arrived)

    def close(self):
        self.stopping.set()
        self.thread.join()
        self.pubsub.close()
        self.client.close()
