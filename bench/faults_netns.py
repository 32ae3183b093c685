"""Fault injection on the network: a worker on its own host, cut off.

Worker A runs in a network namespace of its own, joined by a veth pair;
Redis listens on the root side's address; worker B runs in the root
namespace; both consume ``celery``. While A holds tasks (one running, two
waiting for their countdown, due before and after its lease lapses), the
root side of the veth goes down for ``--cut`` s: A's packets are dropped
silently, as on a cable cut. VOEvents (:func:`gwcelery.tasks.gcn.send`)
and tasks are sent right after the cut. :func:`record` is declared like
the alert path's tasks and dates its start and end by Redis's clock.
Recovery (s) is, per row: from the cut to the held running task's first
completion, to the last completion of the tasks sent at the cut, to the
last notice queued; for the countdowns, the worst lateness after the
ETA; for A after the link is back, from the restore to A's first new
task. Duplicated counts runs started twice (a run cut off before its end
counts: its effects may have happened); for ``gcn.send``, duplicated
notices in the VOEvent queue, the duplicated runs in the note. Root only.

    python bench/faults_netns.py [--cut 60] [--trials 1]
        [--broker-option socket_timeout=5]
"""

import ast
import glob
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

import redis  # noqa: E402

from bench.stack import stop_processes  # noqa: E402
from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402
from gwcelery.util import redis_server  # noqa: E402

STARTED_KEY = 'bench:faults-netns:started'
DONE_KEY = 'bench:faults-netns:done'
QUEUE = 'celery'
#: Namespaces are ``PREFIX-<pid>``, veths ``PREFIX<pid>r`` (root side)
#: and ``PREFIX<pid>n``, work directories ``PREFIX-<pid>-*``: a leftover
#: names the run that made it.
PREFIX = 'gwcut'
_STAMPED_RPUSH = """local t = redis.call('time')
return redis.call('rpush', KEYS[1], ARGV[1] .. ' ' .. t[1] .. '.'
                  .. string.format('%06d', t[2]))"""


def _stamp(client, key, text, patience=300):
    """Append `text` and Redis's time to the list `key`, retrying while
    Redis cannot be reached. A try that timed out may have landed: `text`
    names its run, and :func:`records` keeps one record per run."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return client.eval(_STAMPED_RPUSH, 1, key, text)
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@app.task(name='faults_netns.record', bind=True, shared=False,
          acks_late=True, reject_on_worker_lost=True)
def record(self, number, seconds):
    """Record the start and the end of a run, with the worker's name."""
    client = redis.Redis.from_url(app.conf.broker_url)
    text = f'{number} {self.request.hostname} {uuid.uuid4().hex}'
    try:
        _stamp(client, STARTED_KEY, text)
        time.sleep(seconds)
        _stamp(client, DONE_KEY, text)
    finally:
        client.close()


def ip(*argv, check=True):
    """Run ``ip argv...``; return its output."""
    return subprocess.run(('ip', *argv), check=check, capture_output=True,
                          text=True).stdout


def _kill(pids, signum=signal.SIGKILL):
    """Send `signum` to `pids`; whether one of them exists."""
    exists = False
    for pid in pids:
        try:
            os.kill(int(pid), signum)
            exists = True
        except (ProcessLookupError, ValueError):
            pass
    return exists


def clean_leftovers():
    """Kill the processes in, and delete, the namespaces, veths and
    temporary directories of earlier runs whose process is gone."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(),
                                       f'{PREFIX}-*-*')):
        if not _kill([os.path.basename(path).split('-')[1]], 0):
            shutil.rmtree(path, ignore_errors=True)
    for name in ip('netns', 'list').split():
        if name.startswith(PREFIX + '-') \
                and not _kill([name[len(PREFIX) + 1:]], 0):
            _kill(ip('netns', 'pids', name, check=False).split())
            ip('netns', 'del', name, check=False)
    for line in ip('-o', 'link', 'show').splitlines():
        name = line.split(':')[1].strip().split('@')[0]
        if name.startswith(PREFIX) and not _kill([name[len(PREFIX):-1]], 0):
            ip('link', 'del', name, check=False)


class Link:
    """A network namespace joined to the root one by a veth pair on a
    free ``10.213.N.0/30``: :attr:`outer_ip` in the root namespace,
    :attr:`inner_ip` inside."""

    def __init__(self, tag=None):
        tag = os.getpid() if tag is None else tag
        self.netns = f'{PREFIX}-{tag}'
        self.outer, self.inner = f'{PREFIX}{tag}r', f'{PREFIX}{tag}n'
        used = ip('-o', '-4', 'addr', 'show')
        subnet = next(f'10.213.{n % 256}.' for n in range(tag, tag + 256)
                      if f' 10.213.{n % 256}.' not in used)
        self.outer_ip, self.inner_ip = subnet + '1', subnet + '2'

    def create(self):
        inside = ('netns', 'exec', self.netns, 'ip')
        try:
            ip('netns', 'add', self.netns)
            ip('link', 'add', self.outer, 'type', 'veth', 'peer', 'name',
               self.inner, 'netns', self.netns)
            ip('addr', 'add', f'{self.outer_ip}/30', 'dev', self.outer)
            ip('link', 'set', self.outer, 'up')
            ip(*inside, 'addr', 'add', f'{self.inner_ip}/30', 'dev',
               self.inner)
            ip(*inside, 'link', 'set', self.inner, 'up')
        except BaseException:
            self.delete()
            raise
        return self

    def cut(self):
        """Down the root side: the namespace's packets are dropped without
        an error; the root namespace still reaches :attr:`outer_ip`."""
        ip('link', 'set', self.outer, 'down')

    def restore(self):
        ip('link', 'set', self.outer, 'up')

    def delete(self):
        """Kill what runs inside; delete the namespace and the veths."""
        _kill(ip('netns', 'pids', self.netns, check=False).split())
        ip('link', 'del', self.outer, check=False)
        ip('netns', 'del', self.netns, check=False)


class Worker:
    """A ``gwcelery worker`` of :data:`QUEUE` in the namespace `netns`
    (None: the root one), stopped by SIGTERM if this process dies."""

    def __init__(self, name, netns, env, logfile):
        from gwcelery.util.supervisor import parent_death_signal

        self.name, self.logfile = f'{name}@{os.uname().nodename}', logfile
        prefix = ['ip', 'netns', 'exec', netns] if netns else []
        with open(logfile, 'wb') as out:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, '-m', 'gwcelery', 'worker',
                 '--hostname', self.name, '--queues', QUEUE,
                 '--concurrency', '2', '--loglevel', 'INFO',
                 '--without-mingle', '--without-gossip',
                 '--include', 'bench.faults_netns'],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                preexec_fn=parent_death_signal(signal.SIGTERM))

    def answers(self):
        return bool(app.control.ping(destination=[self.name], timeout=1))

    def consume(self, on):
        """Start or stop taking messages from :data:`QUEUE`."""
        return (app.control.add_consumer if on else app.control
                .cancel_consumer)(QUEUE, destination=[self.name], reply=True)

    def log(self):
        with open(self.logfile, errors='replace') as f:
            return f.read()

    def stop(self):
        stop_processes([self.process], timeout=30)


class Stack:
    """The link, Redis on its root side (:attr:`db`, a client), worker A
    inside, worker B out; the workers' configuration adds `settings` to
    the ``local`` preset."""

    def __init__(self, workdir, settings=None):
        from gwcelery.tools.local import child_environment, write_config

        self.workers, self.db, self.redis = [], None, None
        self.link = Link().create()
        try:
            self.redis = redis_server.RedisServer(
                port=redis_server.free_port(self.link.outer_ip),
                data_dir=os.path.join(workdir, 'redis'))
            self.redis.host = self.link.outer_ip  # its --bind and URL
            self.redis.start()
            self.db = redis.Redis.from_url(self.redis.url)
            for key in ('broker_url', 'result_backend'):
                app.conf[key] = os.environ[f'CELERY_{key.upper()}'] = \
                    self.redis.url
            config = os.path.join(workdir, 'config')
            os.makedirs(config, exist_ok=True)
            write_config(config, {'broker_url': self.redis.url,
                                  'result_backend': self.redis.url,
                                  **(settings or {})})
            env, tag = child_environment(config), os.getpid()
            for name, netns in (('netns-a', self.link.netns),
                                ('root-b', None)):
                self.workers.append(Worker(
                    f'{name}-{tag}', netns, env,
                    os.path.join(workdir, f'{name}.log')))
            self.a, self.b = self.workers
            for worker in self.workers:
                if not within(worker.answers, 120):
                    raise RuntimeError(f'{worker.name} did not start:\n'
                                       f'{worker.log()}')
        except BaseException:
            self.close()
            raise

    def close(self):
        """Stop everything, whatever state it is in."""
        try:
            for worker in self.workers:
                worker.stop()
            if self.db is not None:
                self.db.close()
            if self.redis is not None:
                self.redis.stop()
        finally:
            self.link.delete()


def within(predicate, timeout, interval=0.2):
    """:func:`tests.listener_support.wait_for`, None on a timeout."""
    import pytest

    from tests.listener_support import wait_for
    try:
        return wait_for(predicate, max(timeout, 0), interval)
    except pytest.fail.Exception:
        return None


def records(stack, key):
    """``{number: [(worker, redis time), ...]}``, one entry per run."""
    result, seen = {}, set()
    for item in stack.db.lrange(key, 0, -1):
        number, worker, run, at = item.decode().split()
        if run not in seen:
            seen.add(run)
            result.setdefault(int(number), []).append((worker, float(at)))
    return result


def queued(stack, numbers):
    """``[(ivorn, time queued)]`` of the notices of `numbers` in the
    VOEvent queue."""
    from tests.test_faults_gcn import ivorn_of

    ours = {f'ivo://test/faults#{number}' for number in numbers}
    found = [(ivorn_of(fields[b'voevent']), int(entry.split(b'-')[0]) / 1e3)
             for entry, fields in
             stack.db.xrange(app.conf['gcn_broker_queue_key'])]
    return [(ivorn, at) for ivorn, at in found if ivorn in ours]


def b_waits(stack, waits):
    """Whether B (a client from the root side) waits in BRPOP, or not."""
    return waits == any(
        c['addr'].startswith(stack.link.outer_ip + ':')
        and c['cmd'] == 'brpop' and 'b' in c['flags']
        for c in stack.db.client_list())


def hold_on_a(stack, args, numbers):
    """Have A hold `numbers` while B stands aside: all but the last with
    a countdown to ``args.etas`` seconds after the cut (planned 2 s from
    now), the last running ``args.run`` seconds. Returns the ETAs."""
    stack.b.consume(False)
    within(lambda: b_waits(stack, False), 10)
    planned, etas = time.time() + 2, {}
    for number, offset in zip(numbers, args.etas, strict=False):
        etas[number] = planned + offset
        record.apply_async((number, 0.5),
                           countdown=etas[number] - time.time())
    record.delay(numbers[-1], args.run)
    within(lambda: numbers[-1] in records(stack, STARTED_KEY)
           and stack.db.hlen('unacked') >= len(numbers), 30)
    stack.b.consume(True)
    within(lambda: b_waits(stack, True), 10)
    return etas


def send_at_cut(notices, numbers):
    """The traffic that keeps coming once the link is cut: VOEvents and
    tasks in turn, a VOEvent first."""
    from gwcelery.tasks import gcn
    from tests.test_faults_gcn import notice

    for index in range(max(len(notices), len(numbers))):
        if index < len(notices):
            gcn.send.delay(notice(notices[index]))
        if index < len(numbers):
            record.delay(numbers[index], 0.5)


def a_consumes(stack, numbers, deadline):
    """Once A answers again, send batches of tasks until A runs one or
    `deadline` passes; return the numbers sent."""
    sent = []
    if not within(stack.a.answers, deadline - time.monotonic()):
        return sent
    while time.monotonic() < deadline:
        batch = [next(numbers) for _ in range(4)]
        sent += batch
        for number in batch:
            record.delay(number, 1.5)
        within(lambda b=batch: set(b) <= set(records(stack, DONE_KEY)),
               deadline - time.monotonic())
        started = records(stack, STARTED_KEY)
        if any(w == stack.a.name for n in sent for w, _ in started[n]):
            return sent
    return sent


def settled(stack, numbers, notices):
    """Every task done, every run that started ended, every notice
    queued."""
    started, done = records(stack, STARTED_KEY), records(stack, DONE_KEY)
    return (all(n in done for n in numbers)
            and all(len(started[n]) == len(done.get(n, ())) for n in started)
            and len({i for i, _ in queued(stack, notices)}) == len(notices))


def trial(stack, args, first):
    """One cut of ``args.cut`` s; the rows of :func:`tally`."""
    numbers = iter(range(first, first + 10000))
    held = [next(numbers) for _ in range(len(args.etas) + 1)]
    etas = hold_on_a(stack, args, held)
    notices = [next(numbers) for _ in range(args.notices)]
    at_cut = [next(numbers) for _ in range(args.at_cut)]
    cut = time.time()
    stack.link.cut()
    send_at_cut(notices, at_cut)
    root_ok = stack.redis.answers()
    time.sleep(max(0.0, cut + args.cut - time.time()))  # the fault
    stack.link.restore()
    restored = time.time()
    deadline = time.monotonic() + args.wait
    after = a_consumes(stack, numbers, deadline)
    within(lambda: settled(stack, held + at_cut + after, notices),
           deadline - time.monotonic())
    return tally(stack, dict(
        held=held[-1:], etas=etas, at_cut=at_cut, notices=notices,
        after=after, cut=cut, restored=restored, root_ok=root_ok))


def _count(numbers, started, done):
    """sent, handled, lost, duplicated (runs started twice)."""
    handled = sum(1 for n in numbers if n in done)
    dups = sum(max(0, len(started.get(n, ())) - 1) for n in numbers)
    return len(numbers), handled, len(numbers) - handled, dups


def tally(stack, r):
    """Rows ``(group, sent, handled, lost, duplicated, recovery, note)``
    of one trial (see the module docstring)."""
    started, done = records(stack, STARTED_KEY), records(stack, DONE_KEY)
    names = {stack.a.name: 'A', stack.b.name: 'B'}
    first = {n: min(at for _, at in runs) for n, runs in done.items()}

    def row(group, numbers, origin):
        late = [first[n] - origin(n) for n in numbers if n in first]
        runs = ', '.join(f'{n}: ' + (' '.join(
            f'{names[w]}{at - r["cut"]:+.1f}' for w, at in started.get(n, ()))
            or 'never') for n in numbers)
        return (group, *_count(numbers, started, done),
                max(late) if len(late) == len(numbers) else math.nan,
                f'runs from the cut: {runs}')

    rows = [row('running held by A', r['held'], lambda n: r['cut']),
            row('countdown held by A', list(r['etas']), r['etas'].get),
            row('sent at the cut', r['at_cut'], lambda n: r['cut'])]
    notices = queued(stack, r['notices'])
    unique = {ivorn for ivorn, _ in notices}
    logs = stack.a.log() + stack.b.log()
    runs = sum(logs.count(f'VOEvent ivo://test/faults#{n} ')
               for n in r['notices'])
    lost = [n for n in r['notices'] if f'ivo://test/faults#{n}' not in unique]
    rows.append(('gcn.send at the cut', len(r['notices']), len(unique),
                 len(r['notices']) - len(unique), len(notices) - len(unique),
                 max(at for _, at in notices) - r['cut']
                 if len(unique) == len(r['notices']) else math.nan,
                 f'{runs - len(unique)} duplicated gcn.send runs; lost: '
                 f'{lost}; '
                 f'Redis answered the root side during the cut: '
                 f'{r["root_ok"]}'))
    a_new = [at for n in r['after'] for w, at in started.get(n, ())
             if w == stack.a.name]
    rows.append(('A after the link is back',
                 *_count(r['after'], started, done),
                 min(a_new) - r['restored'] if a_new else math.nan,
                 f'A alive: {stack.a.process.poll() is None}; ran '
                 f'{len(a_new)} new tasks; unrecoverable error: '
                 f'{"Unrecoverable error" in stack.a.log()}'))
    return rows


def merge(results):
    """Sum the trials' rows per group, with the worst recovery (NaN if
    any is unknown)."""
    rows = []
    for group in zip(*results, strict=True):
        recovery = [row[5] for row in group]
        rows.append((f'netns-cut {group[0][0]}', len(group),
                     *[sum(row[i] for row in group) for i in range(1, 5)],
                     math.nan if any(map(math.isnan, recovery))
                     else max(recovery),
                     ' / '.join(row[6] for row in group)))
    return rows


def settings_of(args):
    """The workers' settings: the production broker transport options
    and those of ``--broker-option``."""
    options = dict(app.conf.broker_transport_options or {})
    for option in args.broker_option:
        key, _, value = option.partition('=')
        options[key] = ast.literal_eval(value)
    return {'broker_transport_options': options}


def run(args):
    """Run the bench; return its rows ``(scenario, trials, sent, handled,
    lost, duplicated, recovery_seconds, note)``."""
    args.etas = (args.cut / 6, 2 * args.cut / 3)
    clean_leftovers()
    with tempfile.TemporaryDirectory(
            prefix=f'{PREFIX}-{os.getpid()}-') as workdir:
        stack = Stack(workdir, settings_of(args))
        try:
            results = [trial(stack, args, 10000 * number)
                       for number in range(args.trials)]
        finally:
            stack.close()
            clean_leftovers()
    return merge(results)


def add_arguments(parser):
    parser.add_argument('--cut', type=float, default=60,
                        help='seconds for which worker A is cut off')
    parser.add_argument('--trials', type=int, default=1)
    parser.add_argument('--run', type=float, default=4,
                        help='seconds of the running task that A holds')
    parser.add_argument('--at-cut', type=int, default=4,
                        help='tasks sent right after the cut')
    parser.add_argument('--notices', type=int, default=4,
                        help='VOEvents sent (gcn.send) right after the cut')
    parser.add_argument('--wait', type=float, default=60,
                        help='patience after the link is back (s)')
    parser.add_argument('--broker-option', action='append', default=[],
                        metavar='KEY=VALUE',
                        help="add to the workers' broker transport options "
                        '(VALUE a Python literal), e.g. socket_timeout=5')


def main():
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
