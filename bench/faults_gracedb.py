"""Fault injection on GraceDB while GRB notices arrive: count the notices
that became no External event (lost) or two (duplicated).

Starts a Redis (broker), the local GraceDB server (in this process, on a
fixed port, data in a temporary directory), a TCP proxy in front of it
(:class:`tests.test_faults_gracedb.Proxy`) and one ``gwcelery worker`` of
the ``exttrig`` queue whose GraceDB is the proxy. Real Fermi GBM notices,
each with its own trigger number, go to
:func:`gwcelery.tasks.external_triggers.handle` every ``--interval``
seconds. Scenarios, one fault per trial at a random moment:

* ``gracedb-down``: the server stopped for ``--outage`` seconds, then
  started again on the same port and data directory;
* ``proxy-503-reset-hold``: for ``--burst`` seconds each new connection
  to the proxy is in turn answered 503, reset, or served with the answer
  held past the client time-out.

The worker runs with shorter GraceDB retries than the defaults
(:data:`tests.test_faults_gracedb.FAST_RETRY`: time-out 2 s, back-off from
1 s capped at 4 s, 100 retries) so that it recovers within seconds of the
fault's end; with the defaults (cap 600 s) a retry may wait minutes.

It prints a table (:mod:`bench.table`): scenario, trials, notices
sent, events (triggers with an event), lost, duplicated, the longest time
from the fault's end to the last event, and the retries the worker
logged (those after a read time-out are where a duplicate could arise).

    python bench/faults_gracedb.py [--trials 2] [--notices 60]
"""

import os
import random
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402
from gwcelery.gracedb_server import GraceDbServer  # noqa: E402
from gwcelery.tasks import external_triggers  # noqa: E402
from gwcelery.tools.local import child_environment, write_config  # noqa
from gwcelery.util.redis_server import RedisServer, free_port  # noqa: E402
from tests import test_faults_gracedb as helpers  # noqa: E402

FAST_RETRY, Proxy = helpers.FAST_RETRY, helpers.Proxy
notice, trigger_counts = helpers.notice, helpers.trigger_counts


class Stack:
    """Redis, the local GraceDB server, the proxy and an exttrig worker."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.redis = RedisServer(data_dir=os.path.join(workdir, 'redis'))
        self.redis.start()
        self.data_dir = os.path.join(workdir, 'gracedb')
        self.port = free_port()
        self.server = GraceDbServer(self.data_dir, port=self.port).start()
        self.proxy = Proxy(self.port, hold=FAST_RETRY['gracedb_timeout'] + 1)
        url = self.redis.url
        settings = {'broker_url': url, 'result_backend': url,
                    'gracedb_url': self.proxy.url,
                    'gracedb_host': f'127.0.0.1:{self.proxy.port}',
                    **FAST_RETRY}
        app.conf.update(broker_url=url, result_backend=url)
        write_config(workdir, settings)
        self.log = open(os.path.join(workdir, 'worker.log'), 'wb')
        self.worker = subprocess.Popen(
            [sys.executable, '-m', 'gwcelery', 'worker', '--hostname',
             Stack.hostname(), '--queues', 'exttrig', '--concurrency', '1',
             '--loglevel', 'INFO', '--without-mingle', '--without-gossip'],
            env=child_environment(workdir), stdout=self.log,
            stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not app.control.ping(destination=[self.hostname()],
                                   timeout=1):
            if time.monotonic() > deadline:
                raise RuntimeError('the exttrig worker did not start')

    @staticmethod
    def hostname():
        return f'exttrig@{os.uname().nodename}'

    def retries(self):
        """How many retries, and how many after a read time-out, the
        worker logged so far."""
        with open(os.path.join(self.workdir, 'worker.log'), 'rb') as f:
            text = f.read().decode(errors='replace')
        return text.count('Retry in'), text.count('ReadTimeout')

    def restart_server(self, outage):
        """Stop the GraceDB server for ``outage`` seconds."""
        self.server.stop()
        time.sleep(outage)
        self.server = GraceDbServer(self.data_dir, port=self.port).start()

    def stop(self):
        self.worker.terminate()
        try:
            self.worker.wait(20)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.log.close()
        self.proxy.close()
        self.server.stop()
        self.redis.stop()


def trial(stack, first, count, interval, fault):
    """Send ``count`` notices (triggers numbered from ``first``), running
    ``fault()`` from a random one on; return (events, lost, duplicated,
    recovery s)."""
    triggers = [str(first + number) for number in range(count)]
    at = random.randrange(count // 8, count // 2)
    ended = []
    thread = threading.Thread(
        target=lambda: (fault(), ended.append(time.monotonic())))
    for index, trigger in enumerate(triggers):
        if index == at:
            thread.start()
        external_triggers.handle.delay(notice(trigger))
        time.sleep(interval)
    thread.join()
    deadline = ended[0] + 300
    last_new, seen = ended[0], 0
    while time.monotonic() < deadline:
        counts = trigger_counts(stack.server.url) or {}
        mine = sum(1 for trigger in triggers if trigger in counts)
        if mine > seen:
            seen, last_new = mine, time.monotonic()
        if mine == count:
            break
        time.sleep(0.2)
    time.sleep(3)  # a late duplicate would show up now
    counts = trigger_counts(stack.server.url) or {}
    events = sum(1 for trigger in triggers if trigger in counts)
    duplicated = sum(counts.get(trigger, 0) - 1 for trigger in triggers
                     if counts.get(trigger, 0) > 1)
    return events, count - events, duplicated, last_new - ended[0]


def add_arguments(parser):
    """The bench's options."""
    parser.add_argument('--trials', type=int, default=2)
    parser.add_argument('--notices', type=int, default=60)
    parser.add_argument('--interval', type=float, default=0.5)
    parser.add_argument('--outage', type=float, default=30)
    parser.add_argument('--burst', type=float, default=20)


def run(args):
    """Run the scenarios; return the table's rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix='gwcelery-faults-') as workdir:
        stack = Stack(workdir)
        try:
            scenarios = (
                ('gracedb-down', lambda: stack.restart_server(args.outage)),
                ('proxy-503-reset-hold',
                 lambda: stack.proxy.burst(args.burst)))
            first = 800000000
            for name, fault in scenarios:
                results = []
                before = stack.retries()
                for _ in range(args.trials):
                    results.append(trial(stack, first, args.notices,
                                         args.interval, fault))
                    first += args.notices
                after = stack.retries()
                rows.append((name, args.trials, args.trials * args.notices,
                             sum(r[0] for r in results),
                             sum(r[1] for r in results),
                             sum(r[2] for r in results),
                             max(r[3] for r in results),
                             f'{after[0] - before[0]} retries, '
                             f'{after[1] - before[1]} after a time-out'))
        finally:
            stack.stop()
    return rows


def main():
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
