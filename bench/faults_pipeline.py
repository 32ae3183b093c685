"""Faults on the whole pipeline (``gwcelery local``): Redis killed while
superevents are on their way to a preliminary alert, and the deployment
stopped and started again while BAYESTAR runs.

Each scenario starts ``gwcelery local --no-mock`` on a data directory of
its own and uploads real candidates, the shipped simulated signals, each
by one search in turn and in its style
(:func:`gwcelery.tasks.first2years.upload_candidate`), 5 s apart in time.

* ``redis-kill mid-path``: ``--kill-delay`` s after the last of
  ``--signals`` superevents appears (``--kill-at created``: BAYESTAR runs,
  each superevent's fallback timer and each event's wait for its search's
  products are held as countdowns) or after the first EM_READY
  (``em-ready``), Redis is SIGKILLed. The supervisor restarts it on the
  same port with its append-only file (if not within 15 s, the bench does).
* ``local-restart mid-BAYESTAR``: ``--stop-delay`` s into the first of
  ``--restart-signals`` localisations, ``gwcelery local`` gets SIGINT
  (Ctrl-C) and is started again on the same data directory.

A preliminary is sent once its VOEvent is in the VOEvent broker's Redis
stream (:obj:`~gwcelery.conf.gcn_broker_queue_key`: one entry per IVORN,
its id the time it was queued). Columns: ``sent``, superevents that
existed at the fault; ``handled``, those with a preliminary by the
deadline; ``lost``, the others; ``dup``, notices identical to an earlier
one of their superevent but for the serial number (the one with the sky
map after a fallback one is not); recovery: from the kill to the
preliminary of the last superevent that had none at the kill, or from
the restart's "is up" to the preliminary of the superevent whose
localisation was running.

    python bench/faults_pipeline.py [--signals 16] [--restart-signals 2]
"""

import base64
import calendar
import collections
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import lxml.etree
import psutil
import redis

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402
from gwcelery.tasks import first2years, gracedb  # noqa: E402
from gwcelery.tools.local import read_config  # noqa: E402
from gwcelery.util.redis_server import RedisServer, free_port  # noqa: E402
from gwcelery.util.supervisor import parent_death_signal  # noqa: E402

SCENARIOS = ('redis-kill mid-path', 'local-restart mid-BAYESTAR')
WORKERS = ('celery', 'openmp', 'superevent', 'exttrig')
LOCALIZE = 'gwcelery.tasks.localization.localize'
#: Signal n as the search n % 3 finds it: all pass the public alert
#: threshold (signal 0 as PyCBC finds it would not).
CANDIDATES = [(number, first2years.PIPELINES[number % 3])
              for number in range(first2years.NUM_SIGNALS)]
#: A milestone line of ``gwcelery local`` (not a supervisor message).
MILESTONE = re.compile(r'^\[local\] (superevent \S+ created|event \S+ '
                       r'uploaded|M?S\d{6}[a-z]+: |[MG]\d+: )', re.M)


class Deployment:
    """``gwcelery local --no-mock`` on `data_dir`, its output appended to
    ``{data_dir}.log``, asking for the same ports at each start."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        os.makedirs(os.path.dirname(data_dir), exist_ok=True)
        self.logfile = f'{data_dir}.log'
        self.ports = {name: free_port() for name in
                      ('redis', 'gracedb', 'flower', 'console', 'gcn')}
        self.process = self.settings = None

    def start(self, timeout=300):
        """Start it; return the time (``time.time``) it said it is up."""
        argv = [sys.executable, '-m', 'gwcelery', 'local', '--no-mock',
                '--data-dir', self.data_dir, *[
                    arg for name, port in self.ports.items()
                    for arg in (f'--{name}-port', str(port))]]
        env = {key: value for key, value in os.environ.items()
               if key not in ('CELERY_CONFIG_MODULE', 'CELERY_BROKER_URL',
                              'CELERY_RESULT_BACKEND', 'GWCELERY_LOCAL_DIR')}
        offset = len(self.output())
        with open(self.logfile, 'ab') as out:
            # Stopped as by Ctrl-C if this process dies, however.
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=parent_death_signal(signal.SIGINT))
        poll(lambda: 'gwcelery local is up' in self.output()[offset:]
             or self.process.poll() is not None, timeout, 0.25)
        if 'gwcelery local is up' not in self.output()[offset:]:
            raise RuntimeError(f'gwcelery local did not start: see '
                               f'{self.logfile}')
        up = time.time()
        # A port still in TIME_WAIT is replaced: read what it chose.
        self.settings = read_config(self.data_dir)
        app.conf.update(gracedb_url=self.settings['gracedb_url'])
        return up

    def output(self, path=None):
        """What it (or the file `path`) printed so far."""
        if not os.path.exists(path or self.logfile):
            return ''
        with open(path or self.logfile, 'rb') as f:
            return f.read().decode(errors='replace')

    def worker_log(self, name):
        return self.output(path=os.path.join(self.data_dir, 'logs',
                                             f'worker-{name}.log'))

    def redis_pid(self):
        """The pid of its Redis server (None while there is none)."""
        for child in psutil.Process(self.process.pid).children():
            try:
                if (child.name() == 'redis-server'
                        and child.status() != psutil.STATUS_ZOMBIE):
                    return child.pid
            except psutil.Error:
                pass  # gone meanwhile
        return None

    def redis(self, call):
        """Return ``call(client)`` with a client of its Redis."""
        client = redis.Redis.from_url(self.settings['broker_url'],
                                      socket_timeout=5)
        try:
            return call(client)
        finally:
            client.close()

    def stop(self, timeout=90):
        """SIGINT (Ctrl-C), SIGKILL after `timeout` s (its children die
        with it); return the seconds it took."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        start = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - start


def poll(predicate, timeout, interval=0.5):
    """Call `predicate` until it returns something true or `timeout` s
    pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def upload_signals(count, spacing=5.0):
    """Upload `count` candidates (:data:`CANDIDATES` in turn) at GPS times
    `spacing` s apart, the last 20 s ago; return their graceids."""
    end = first2years.now_gps() - 20.0
    graceids = []
    for index in range(count):
        number, pipeline = CANDIDATES[index % len(CANDIDATES)]
        coinc = first2years.load_candidate(number, pipeline)
        gpstime = end - spacing * (count - 1 - index)
        coinc = first2years.shift_coinc(
            coinc, gpstime - first2years.coinc_time(coinc))
        graceids.append(first2years.upload_candidate(coinc, pipeline,
                                                     'AllSky'))
    return graceids


def superevents():
    """``{superevent id: (creation time, labels)}`` (GraceDB's time is to
    the second: a lateness computed from it errs by up to 1 s late)."""
    return {superevent['superevent_id']: (calendar.timegm(time.strptime(
        superevent['created'], '%Y-%m-%d %H:%M:%S UTC')),
        superevent['labels'])
        for superevent in gracedb.get_superevents('category: Production')}


def held(client):
    """The messages held unacknowledged: ``(task, id, eta, args)``."""
    messages = []
    for raw in client.hvals('unacked'):
        message = json.loads(raw)[0]
        headers = message.get('headers') or {}
        try:
            args = json.loads(base64.b64decode(message['body']))[0]
        except (ValueError, KeyError, IndexError, TypeError):
            args = None
        messages.append((headers.get('task'), headers.get('id'),
                         headers.get('eta'), args))
    return messages


def in_flight(deployment):
    """What the workers hold, e.g. ``16 countdown get_superevent, 1
    localize``: the task messages not acknowledged (not the replies to
    control commands that also wait there), the countdowns by task."""
    kinds = collections.Counter(
        ('countdown ' if eta else '') + task.rsplit('.', 1)[-1]
        for task, _, eta, _ in deployment.redis(held) if task)
    return ', '.join(f'{n} {kind}' for kind, n in kinds.most_common())


def preliminaries(client):
    """Preliminary notices queued for GCN: ``{superevent: [(queued time,
    contents but the serial number, whether with a sky map)]}``."""
    notices = collections.defaultdict(list)
    for entry_id, fields in client.xrange(app.conf['gcn_broker_queue_key']):
        params = {param.get('name'): param.get('value') for param in
                  lxml.etree.fromstring(fields[b'voevent']).iter('Param')}
        if params.get('AlertType') == 'Preliminary':
            notices[params['GraceID']].append((
                int(entry_id.split(b'-')[0]) / 1e3,
                tuple(sorted((name, value) for name, value in params.items()
                             if name != 'Pkt_Ser_Num')),
                'skymap_fits' in params))
    return notices


def tally(ids, notices):
    """``(handled, lost, duplicated)`` of the superevents `ids`."""
    handled = sum(1 for sid in ids if notices.get(sid))
    dups = sum(len(notices.get(sid, ())) -
               len({contents for _, contents, _ in notices.get(sid, ())})
               for sid in ids)
    return handled, len(ids) - handled, dups


def wait_for_notices(deployment, ids, deadline, quiet_until, settle,
                     also=lambda: True):
    """Wait until each superevent of `ids` has a preliminary, `also()`,
    and it is later than `quiet_until` and `settle` s after the last of
    these first notices (so that a duplicate would be there), or until
    `deadline`; return the notices."""
    notices = {}
    while time.time() < deadline:
        try:
            notices = deployment.redis(preliminaries)
        except redis.RedisError:
            pass  # down: a restart is on its way
        firsts = [min(notices[sid])[0] for sid in ids if notices.get(sid)]
        if (len(firsts) == len(ids) and time.time() > quiet_until
                and time.time() > max(firsts, default=0) + settle
                and also()):
            break
        time.sleep(1)
    return notices


def unrecoverable(deployment):
    """The workers whose log says 'Unrecoverable error', or 'none'."""
    return ', '.join(name for name in WORKERS if 'Unrecoverable error'
                     in deployment.worker_log(name)) or 'none'


def milestones_after(deployment, offset, line):
    """Milestones printed after the first `line` following character
    `offset` of the output (0 if there is no such line)."""
    output = deployment.output()[offset:]
    start = output.find(line)
    return 0 if start < 0 else len(MILESTONE.findall(output[start:]))


def kill_redis(deployment, patience=15):
    """SIGKILL Redis and wait until it answers again, restarted by the
    supervisor or else started here on the same port with the same data
    (that process returned). Return (kill time, seconds down, process)."""
    old = deployment.redis_pid()
    os.kill(old, signal.SIGKILL)
    killed = time.time()

    def answers():
        try:
            return deployment.redis(lambda client: client.ping())
        except redis.RedisError:
            return False
    own = None
    if not poll(lambda: deployment.redis_pid() not in (None, old)
                and answers(), patience, 0.1):
        port = int(deployment.settings['broker_url'].split(':')[2][:-2])
        own = subprocess.Popen(RedisServer(
            port=port, persistent=True,
            data_dir=os.path.join(deployment.data_dir, 'redis')).command(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=parent_death_signal(signal.SIGTERM))
        poll(answers, 30, 0.1)
    return killed, time.time() - killed, own


def wait_to_kill(args):
    """Wait for the moment of the kill (``--kill-at``); return the
    superevents then."""
    def ready():
        now = superevents()
        return now if len(now) >= args.signals and (
            args.kill_at == 'created' or any(
                'EM_READY' in labels for _, labels in now.values())) \
            else None
    now = poll(ready, 300, 0.2)
    if not now:
        raise RuntimeError('no moment to kill within 300 s')
    time.sleep(args.kill_delay)
    return now


def redis_kill(args, workdir):
    """Scenario 1; return its row."""
    deployment = Deployment(os.path.join(workdir, 'redis-kill'))
    own = None
    try:
        deployment.start()
        upload_signals(args.signals)
        created = {sid: t for sid, (t, _) in wait_to_kill(args).items()}
        doing = in_flight(deployment)
        offset = len(deployment.output())
        killed, down, own = kill_redis(deployment)
        timeout = deployment.settings['preliminary_alert_timeout']
        # What the kill left unacknowledged is back after the visibility
        # time-out (and a sweep, every 2 s): any duplicate is there 20 s on.
        notices = wait_for_notices(
            deployment, sorted(created),
            max(created.values()) + timeout + args.grace, killed + 20 +
            deployment.settings['broker_transport_options'][
                'visibility_timeout'], args.settle)
        note = (f'in flight at the kill: {doing}; Redis back in {down:.1f} s'
                + (' (restarted by the supervisor' if own is None else
                   ' (NOT restarted by the supervisor: by the bench')
                + ', same port); '
                f'{milestones_after(deployment, offset, "redis restarted")}'
                ' milestones printed after its restart; Unrecoverable '
                f'error: {unrecoverable(deployment)}')
        return redis_kill_row(created, notices, killed, timeout, note)
    finally:
        deployment.stop()
        if own is not None:
            own.kill()
            own.wait()


def redis_kill_row(created, notices, killed, timeout, note):
    """The row of scenario 1 from what was measured."""
    ids = sorted(created)
    handled, lost, dups = tally(ids, notices)
    firsts = {sid: min(notices[sid]) for sid in ids if notices.get(sid)}
    stranded = [sid for sid in ids
                if sid not in firsts or firsts[sid][0] > killed]
    recovery = (max(firsts[sid][0] for sid in stranded) - killed
                if stranded and not lost else math.nan)
    after = min((first[0] - killed for first in firsts.values()
                 if first[0] > killed), default=math.nan)
    late = [first[0] - created[sid] - timeout
            for sid, first in firsts.items() if not first[2]]
    note = (f'{len(stranded)} without a preliminary at the kill; first '
            f'notice {after:.1f} s after the kill; {len(late)} sent by the '
            f'fallback timer, at most {max(late, default=math.nan):.1f} s '
            'after it was due; ' + note)
    return (SCENARIOS[0], 1, len(ids), handled, lost, dups, recovery, note)


def running_localisation(deployment):
    """``(task id, graceid)`` of the localisation that runs: the openmp
    worker takes a message only when it is free (and holds it until the
    end), so the one it holds runs. None if there is none."""
    return next(((task_id, args[0]['uid'])
                 for task, task_id, eta, args in deployment.redis(held)
                 if task == LOCALIZE and not eta), None)


def task_times(deployment, worker, task_id, since):
    """``{state: first time}`` of task `task_id` in the log of `worker`
    from character `since` on (e.g. ``received``, ``succeeded``)."""
    times = {}
    for stamp, state in re.findall(
            rf'^\[([-0-9 :,]+): INFO/[\w-]+\] Task \S+\[{task_id}\] '
            r'(\w+)', deployment.worker_log(worker)[since:], re.M):
        times.setdefault(state, time.mktime(time.strptime(
            stamp[:19], '%Y-%m-%d %H:%M:%S')) + int(stamp[20:]) / 1e3)
    return times


def local_restart(args, workdir):
    """Scenario 2; return its row."""
    deployment = Deployment(os.path.join(workdir, 'local-restart'))
    try:
        deployment.start()
        graceids = upload_signals(args.restart_signals)
        running = poll(lambda: running_localisation(deployment), 300, 0.2)
        time.sleep(args.stop_delay)
        if not running or running_localisation(deployment) != running:
            raise RuntimeError('no localisation ran at the stop')
        task_id, graceid = running
        offset = len(deployment.output())
        since = len(deployment.worker_log('openmp'))
        stopped = deployment.stop()
        killed = re.search(r'worker-openmp \(pid \d+\) did not stop',
                           deployment.output()[offset:])
        up = deployment.start()
        events = {gid: gracedb.get_event(gid) for gid in graceids}
        ids = sorted({event['superevent'] for event in events.values()})
        target = events[graceid]['superevent']
        notices = wait_for_notices(
            deployment, ids, up + args.restart_wait, 0, args.settle,
            also=lambda: 'succeeded' in task_times(
                deployment, 'openmp', task_id, since))
        rerun = {state: f'{at - up:+.1f}' for state, at in task_times(
            deployment, 'openmp', task_id, since).items()}
        first = min(notices[target]) if notices.get(target) else None
        note = (f'{graceid} ({target}) was being localised; the stop took '
                f'{stopped:.1f} s (openmp worker '
                f'{"killed" if killed else "NOT killed"} after 15 s); that '
                f'localisation again, s from up: {rerun or "NOT RUN"}; the '
                'first preliminary of its superevent '
                + ('-' if first is None else 'with' if first[2] else
                   'WITHOUT (fallback)') + ' a sky map; Unrecoverable '
                f'error: {unrecoverable(deployment)}')
        return (SCENARIOS[1], 1, len(ids), *tally(ids, notices),
                first[0] - up if first else math.nan, note)
    finally:
        deployment.stop()


def add_arguments(parser):
    """The bench's options (defaults: both scenarios in about 6 min)."""
    add = parser.add_argument
    add('--scenario', choices=SCENARIOS, action='append',
        help='run only this one (repeatable)')
    add('--signals', type=int, default=16, help='superevents at the kill')
    add('--kill-at', choices=('created', 'em-ready'), default='created')
    add('--kill-delay', type=float, default=0.1, help='s after that')
    add('--restart-signals', type=int, default=2)
    add('--stop-delay', type=float, default=2.0,
        help='s of BAYESTAR before the SIGINT')
    add('--restart-wait', type=float, default=150,
        help='longest wait after the restart is up')
    add('--grace', type=float, default=60, help='s past the fallback '
        'time-out after which a superevent without notice is lost')
    add('--settle', type=float, default=10, help='s after the last first '
        'notice to wait for duplicates')
    add('--workdir', help='data and logs (default: a new temporary '
        'directory, kept)')


def run(args):
    """Run the scenarios; return their rows."""
    workdir = args.workdir or tempfile.mkdtemp(prefix='faults-pipeline-')
    print(f'data and logs in {workdir}', flush=True)
    return [scenario(args, workdir) for name, scenario in
            zip(SCENARIOS, (redis_kill, local_restart), strict=True)
            if not args.scenario or name in args.scenario]


def main():
    # SIGTERM stops what was started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
