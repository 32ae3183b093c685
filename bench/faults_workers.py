"""Fault injection on the workers: SIGKILL of a pool process, and of a
worker's main process, while ``acks_late`` tasks run.

Starts a Redis and one worker per queue (``celery``, ``openmp``,
``superevent``, ``exttrig``) that also loads this module: its
:func:`record` tasks, one per queue, declared like the alert path's tasks
(``acks_late``, ``reject_on_worker_lost``), sleep a moment and append
their number to a Redis list. Scenarios:

* ``pool-kill <queue>``: tasks flow on the queue (on ``celery`` together
  with :func:`gwcelery.tasks.gcn.send` of distinct VOEvents); at a random
  moment the pool process running one of them is SIGKILLed;
* ``main-kill <queue>``: the worker's main process (and its pool) is
  SIGKILLed while it holds tasks, a new worker takes its place, and the
  bench measures when the held tasks come back, with the production
  settings: their leases lapse (:mod:`gwcelery.util.broker_lease`).

The table has the columns of :mod:`bench.table`: tasks sent, handled,
lost (not handled by the end), duplicated (handled twice), and the time
to recover: for a pool kill, from the kill to the killed task's second
run; for a main kill, from the kill to the last held task's completion.

    python bench/faults_workers.py [--trials 2] [--tasks 30] [--wait 60]
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

import redis  # noqa: E402

from bench.stack import stop_processes  # noqa: E402
from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402

DONE_KEY = 'bench:faults-workers:done'
STARTED_KEY = 'bench:faults-workers:started'
QUEUES = ('celery', 'openmp', 'superevent', 'exttrig')


def _rpush_when_up(client, key, value, patience=120):
    """Append to a Redis list, waiting out a Redis outage: the record of a
    task must not be lost because Redis was restarted while it ran."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return client.rpush(key, value)
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _record(number, seconds):
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        _rpush_when_up(client, STARTED_KEY, number)
        time.sleep(seconds)
        _rpush_when_up(client, DONE_KEY, f'{number} {time.time()}')
    finally:
        client.close()


#: A recording task per queue, declared as the alert path's tasks are.
RECORD = {
    queue: app.task(name=f'faults_workers.record_{queue}', queue=queue,
                    shared=False, acks_late=True,
                    reject_on_worker_lost=True)(_record)
    for queue in QUEUES}


class Workers:
    """Redis and the four workers, in a temporary directory."""

    def __init__(self, workdir):
        from gwcelery.tools.local import child_environment, write_config
        from gwcelery.util.redis_server import RedisServer

        self.workdir = workdir
        self.redis = RedisServer(data_dir=os.path.join(workdir, 'redis'))
        self.redis.start()
        url = self.redis.url
        for key in ('broker_url', 'result_backend'):
            app.conf[key] = url
            os.environ[f'CELERY_{key.upper()}'] = url
        self._write, self._env = write_config, child_environment
        self.processes = {}

    def start(self, queue):
        """Start (or replace) the worker of `queue`."""
        config = os.path.join(self.workdir, 'config')
        os.makedirs(config, exist_ok=True)
        self._write(config, {
            'broker_url': self.redis.url, 'result_backend': self.redis.url})
        log = open(os.path.join(self.workdir, f'{queue}.log'), 'ab')
        self.processes[queue] = subprocess.Popen(
            [sys.executable, '-m', 'gwcelery', 'worker', '--hostname',
             f'{queue}-{len(self.processes)}-{time.monotonic_ns()}@%h',
             '--queues', queue, '--concurrency', '2', '--loglevel', 'INFO',
             '--without-mingle', '--without-gossip',
             '--include', 'bench.faults_workers'],
            env=self._env(config), stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT)
        deadline = time.monotonic() + 120
        while not self.pool(queue):
            if time.monotonic() > deadline:
                raise RuntimeError(f'worker {queue} did not start')
            time.sleep(0.5)
        time.sleep(3)  # its consumer is connected a moment after the fork

    def pool(self, queue):
        """The pids of the pool processes of the worker of `queue`."""
        pid = self.processes[queue].pid
        try:
            with open(f'/proc/{pid}/task/{pid}/children') as children:
                return [int(child) for child in children.read().split()]
        except OSError:
            return []

    def kill_main(self, queue):
        """SIGKILL the worker's main process and, since orphaned pool
        processes would go on, its pool; return the kill time."""
        pool = self.pool(queue)
        process = self.processes[queue]
        process.kill()
        killed = time.time()
        for pid in pool:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        return killed

    def stop(self):
        stop_processes(self.processes.values(), timeout=30)
        self.redis.stop()


def done(workers):
    """``{number: [completion times]}`` of the recorded tasks."""
    client = redis.Redis.from_url(workers.redis.url)
    try:
        items = client.lrange(DONE_KEY, 0, -1)
    finally:
        client.close()
    result = {}
    for item in items:
        number, at = item.decode().split()
        result.setdefault(int(number), []).append(float(at))
    return result


def started(workers):
    """The numbers of the tasks that started twice or more."""
    client = redis.Redis.from_url(workers.redis.url)
    try:
        items = [int(item) for item in client.lrange(STARTED_KEY, 0, -1)]
    finally:
        client.close()
    return {number for number in items if items.count(number) > 1}


def queued_ivorns(workers):
    client = redis.Redis.from_url(workers.redis.url)
    try:
        entries = client.xrange(app.conf['gcn_broker_queue_key'])
    finally:
        client.close()
    from tests.test_faults_gcn import ivorn_of
    return [ivorn_of(fields[b'voevent']) for _, fields in entries]


def wait_done(workers, numbers, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(numbers) <= set(done(workers)):
            break
        time.sleep(0.2)
    return done(workers)


def count(numbers, finished):
    runs = [len(finished.get(number, ())) for number in numbers]
    return (sum(1 for n in runs if n), sum(1 for n in runs if not n),
            sum(n - 1 for n in runs if n > 1))


def pool_kill(workers, queue, first, tasks):
    """One trial: `tasks` tasks of 0.3 s; kill the pool process of one
    that runs. Returns (sent, handled, lost, dup, recovery)."""
    from gwcelery.tasks import gcn
    from tests.test_faults_gcn import notice

    numbers = range(first, first + tasks)
    at = random.randrange(tasks // 4, 3 * tasks // 4)
    ivorns = []
    for number in numbers:
        RECORD[queue].delay(number, 0.3)
        if queue == 'celery':
            gcn.send.delay(notice(number))
            ivorns.append(f'ivo://test/faults#{number}')
    time.sleep(0.3 * at / 2)  # concurrency 2
    victim = random.choice(workers.pool(queue))
    os.kill(victim, signal.SIGKILL)
    killed = time.time()
    finished = wait_done(workers, numbers, 120)
    handled, lost, dups = count(numbers, finished)
    # The killed task is the one that started twice: its completion is
    # the end of the outage.
    again = [max(finished[n]) for n in started(workers) & set(numbers)
             if n in finished]
    recovery = (max(again) - killed) if again else float('nan')
    sent = len(numbers)
    if ivorns:
        queued = [ivorn for ivorn in queued_ivorns(workers)
                  if ivorn in ivorns]
        sent += len(ivorns)
        handled += len(set(queued))
        lost += len(set(ivorns) - set(queued))
        dups += len(queued) - len(set(queued))
    return sent, handled, lost, dups, recovery


def main_kill(workers, queue, first, tasks, wait):
    """Kill the worker of `queue` (its main process) while it holds
    `tasks` tasks of 2 s, start a new one; wait up to `wait` s for them."""
    numbers = range(first, first + tasks)
    for number in numbers:
        RECORD[queue].delay(number, 2.0)
    time.sleep(1.0 + random.random())
    killed = workers.kill_main(queue)
    held = set(numbers) - set(done(workers))
    workers.start(queue)
    finished = wait_done(workers, numbers, wait)
    handled, lost, dups = count(numbers, finished)
    back = [min(finished[n]) - killed for n in held if n in finished]
    recovery = max(back) if back and not lost else float('nan')
    return len(numbers), handled, lost, dups, recovery, len(held)


def add_arguments(parser):
    """The bench's options."""
    parser.add_argument('--trials', type=int, default=2)
    parser.add_argument('--tasks', type=int, default=30)
    parser.add_argument('--wait', type=float, default=60)


def run(args):
    """Run the scenarios; return the table's rows."""
    rows = []
    number = 0
    with tempfile.TemporaryDirectory(prefix='gwcelery-faults-') as workdir:
        workers = Workers(workdir)
        try:
            for queue in QUEUES:
                workers.start(queue)
            for queue in QUEUES:
                results = []
                for _ in range(args.trials):
                    results.append(pool_kill(workers, queue, number,
                                             args.tasks))
                    number += args.tasks
                rows.append((f'pool-kill {queue}', args.trials,
                             *[sum(r[i] for r in results) for i in range(4)],
                             max(r[4] for r in results),
                             'with gcn.send' if queue == 'celery' else ''))
            for queue in QUEUES:
                sent, handled, lost, dups, recovery, held = main_kill(
                    workers, queue, number, 6, args.wait)
                number += 6
                rows.append((f'main-kill {queue}', 1, sent, handled, lost,
                             dups, recovery,
                             f'{held} not done at the kill; {lost} not '
                             f'back after {args.wait:g} s'))
        finally:
            workers.stop()
    return rows


def main():
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
