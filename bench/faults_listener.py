"""Fault injection on the LVAlert path: one fault per trial while alerts
flow, then count what was lost or duplicated.

Starts a persistent Redis (append-only file), a ``gwcelery worker`` that
runs the LVAlert listener and a recording handler
(``tests/listener_tasks.py``: every alert handed to it is appended to a
Redis list), and ``gwcelery beat`` (which restarts the listener). Alerts
go on the Redis alert stream as the local GraceDB server publishes them
(:class:`gwcelery.util.alert_stream.AlertStream`). Scenarios:

* ``listener-kill``: SIGKILL of the listener's process at a random moment
  while alerts arrive every 20 ms;
* ``redis-kill``: SIGKILL of Redis while alerts arrive, restart on the
  same port one second later (the publisher retries meanwhile);
* ``malformed``: ``--hostile`` hostile messages (truncated, binary, 1 MB,
  invalid JSON, XML entity expansion, another server's alerts, missing
  fields) between the valid ones.

It prints a table (:func:`bench.table.print_table`): scenario, trials,
alerts sent, alerts handled, lost, duplicated, the longest time to
recover (from the fault to the last alert handled), and whether the
listener survived every hostile message. ``bench/faults.py`` runs it
with the other fault benches.

    python bench/faults_listener.py [--trials 3] [--alerts 100]
                                    [--hostile 10000]
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import redis

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

from bench.stack import stop_processes  # noqa: E402
from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402
from gwcelery.tools.local import child_environment, write_config  # noqa
from gwcelery.util.alert_stream import AlertStream  # noqa: E402
from gwcelery.util.redis_server import RedisServer, free_port  # noqa: E402
from tests.listener_tasks import LVALERT_KEY  # noqa: E402
from tests.test_faults import GRACEDB, HOSTILE, NODE, alert  # noqa: E402

LISTENER = 'gwcelery.tasks.lvalert.listen'

class Stack:
    """Redis, one worker and Beat in a temporary directory."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.redis = RedisServer(data_dir=os.path.join(workdir, 'redis'),
                                 persistent=True).start()
        url = self.redis.url
        self.settings = {
            'broker_url': url, 'result_backend': url,
            'lvalert_transport': 'redis', 'lvalert_redis_url': url,
            'gracedb_url': GRACEDB,
            'gcn_remote_port': free_port(), 'gcn_bind_port': free_port(),
            'listener_reconnect_delay_max': 2.0,
            'mock_events_interval': None}
        for key, value in self.settings.items():
            app.conf[key] = value
        os.environ['CELERY_BROKER_URL'] = url
        os.environ['CELERY_RESULT_BACKEND'] = url
        write_config(workdir, self.settings)
        env = child_environment(workdir)
        self.processes = [self._start(env, 'worker', [
            'worker', '--hostname', 'faults@%h', '--queues', 'celery',
            '--loglevel', 'INFO', '--without-mingle', '--without-gossip',
            '--include', 'tests.listener_tasks', '--concurrency', '5'])]
        self.processes.append(self._start(env, 'beat', [
            'beat', '--loglevel', 'INFO', '--schedule',
            os.path.join(workdir, 'schedule')]))

    def _start(self, env, name, args):
        log = open(os.path.join(self.workdir, f'{name}.log'), 'wb')
        return subprocess.Popen([sys.executable, '-m', 'gwcelery', *args],
                                env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT)

    def client(self):
        return redis.Redis.from_url(self.redis.url)

    def listener(self, timeout=120):
        """The running listener's ``{'id', 'worker_pid', ...}``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                active = app.control.inspect(timeout=1).active() or {}
            except (OSError, redis.RedisError):
                active = {}
            copies = [task for tasks in active.values() for task in tasks
                      if task['name'] == LISTENER]
            if len(copies) == 1:
                return copies[0]
            time.sleep(0.2)
        raise RuntimeError('the listener did not start')

    def stop(self):
        stop_processes(self.processes)
        self.redis.stop()


def publish(stack, messages):
    client = stack.client()
    try:
        AlertStream(client).append_many((NODE, m) for m in messages)
    finally:
        client.close()


def received(stack):
    try:
        client = stack.client()
        try:
            return [json.loads(item)['uid']
                    for item in client.lrange(LVALERT_KEY, 0, -1)]
        finally:
            client.close()
    except redis.RedisError:
        return None


def trial(stack, first, count, fault):
    """Send ``count`` alerts (every 20 ms) numbered from ``first``; call
    ``fault(stack)`` at a random moment; return (handled, lost, duplicated,
    recovery s)."""
    numbers = range(first, first + count)
    at = random.randrange(count // 4, 3 * count // 4)
    faulted = None
    for number in numbers:
        if number - first == at:
            fault(stack)
            faulted = time.monotonic()
        while True:
            try:
                publish(stack, [alert(number)])
                break
            except redis.RedisError:
                time.sleep(0.1)  # Redis is restarting: a publisher retries
        time.sleep(0.02)
    expected = {f'G{number}' for number in numbers}
    deadline = time.monotonic() + 120
    uids = None
    while time.monotonic() < deadline:
        uids = received(stack)
        if uids is not None and expected <= set(uids):
            break
        time.sleep(0.1)
    recovery = time.monotonic() - faulted
    mine = [uid for uid in uids or () if uid in expected]
    lost = len(expected - set(mine))
    return len(set(mine)), lost, len(mine) - len(set(mine)), recovery


def listener_kill(stack):
    os.kill(stack.listener()['worker_pid'], signal.SIGKILL)


def redis_kill(stack):
    stack.redis.kill()
    time.sleep(1)
    # From the main thread: Redis gets its parent-death signal when the
    # thread that started it ends.
    stack.redis.start()


def run_malformed(stack, hostile, valid=100):
    """``hostile`` hostile messages spread between ``valid`` valid ones."""
    before = stack.listener()['id']
    start = len(received(stack))
    per_gap = max(1, hostile // valid)
    sent = 0
    small = [message for message in HOSTILE if len(message) < 2**16]
    big = [message for message in HOSTILE if len(message) >= 2**16]
    for number in range(valid):
        # The big ones once in ten gaps: the stream keeps what it is sent.
        batch = [random.choice(small) for _ in range(per_gap)]
        if number % 10 == 0:
            batch[0:len(big)] = big
        sent += len(batch)
        publish(stack, [*batch, alert(900000 + number)])
    expected = [f'G{900000 + number}' for number in range(valid)]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = received(stack)[start:]
        if len(got) >= valid:
            break
        time.sleep(0.2)
    got = received(stack)[start:]
    alive = stack.listener()['id'] == before
    return sent, valid, len(set(expected) - set(got)), \
        len(got) - len(set(got)), alive


def add_arguments(parser):
    """The bench's options."""
    parser.add_argument('--trials', type=int, default=3)
    parser.add_argument('--alerts', type=int, default=100)
    parser.add_argument('--hostile', type=int, default=10000)


def run(args):
    """Run the scenarios; return the table's rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix='gwcelery-faults-') as workdir:
        stack = Stack(workdir)
        try:
            stack.listener()
            number = 0
            for name, fault in (('listener-kill', listener_kill),
                                ('redis-kill (listener)', redis_kill)):
                results = []
                for _ in range(args.trials):
                    results.append(trial(stack, number, args.alerts,
                                         fault))
                    number += args.alerts
                    stack.listener()
                rows.append((name, args.trials, args.trials * args.alerts,
                             sum(r[0] for r in results),
                             sum(r[1] for r in results),
                             sum(r[2] for r in results),
                             max(r[3] for r in results), ''))
            sent, valid, lost, dups, alive = run_malformed(stack,
                                                           args.hostile)
            rows.append(('hostile lvalert-redis', 1, valid, valid - lost,
                         lost, dups, float('nan'),
                         f'{sent} hostile; listener '
                         f'{"alive" if alive else "RESTARTED"}'))
        finally:
            stack.stop()
    return rows


def main():
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
