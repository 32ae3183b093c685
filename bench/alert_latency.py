"""Benchmark of the alert latency with the whole local stack.

Starts ``gwcelery local --no-mock`` (Redis, the local GraceDB server, one
worker per queue, Beat with the LVAlert listener and the VOEvent broker,
Flower) in a temporary directory, connects pygcn's client to the VOEvent
broker as GCN's receiver would, and listens to the server's alerts on
Redis pub/sub. Then, one at a time, uploads simulated CBC candidates as a
search does, in the style of ``--pipeline``
(:data:`gwcelery.tasks.first2years.UPLOAD_STYLES`: ``coinc.xml`` with the
PSDs inside, as gstlal and MBTA do in O4, or ``coinc.xml`` then
``psd.xml.gz``, as PyCBC does; over HTTP with gracedb-sdk): the signals
shipped for the mock events (``gwcelery/data/first2years``, simulated
with ligo.skymap's ``bayestar-inject`` and ``bayestar-realize-coincs``,
see ``tools/make_mock_events.py``), moved to the current time.

For each candidate it records, from the start of the upload:

* ``superevent``: the superevent's ``new`` alert;
* ``skymap``: the ``log`` alert of the event's ``bayestar.multiorder.fits``;
* ``voevent``: the preliminary VOEvent received by the pygcn client;
* ``bayestar``: BAYESTAR's own run time (``RUNTIME`` in the FITS header);

then signs the superevent off as the rapid-response team would (an
``ADV`` signoff through the GraceDB API; OK for even candidates, NO for
odd ones) and records, from the ``label_added`` alert of ``ADVOK`` or
``ADVNO``:

* ``initial``: the Initial VOEvent received by the pygcn client;
* ``retraction``: the Retraction VOEvent received by the pygcn client;

and prints the table, then the medians and the figure of merit, the
pipeline overhead = alert latency (``voevent``) - BAYESTAR time, whose p50
should be under a second, as should those of ``initial`` and
``retraction``. The next candidate is uploaded once the previous
one's products (volume plot included) are done, so that each localisation
finds the openmp worker idle.

    python bench/alert_latency.py [--events 6] [--pipeline gstlal]
"""

import argparse
import io
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import gcn
import redis
from astropy.io import fits
from gracedb_sdk import Client

from gwcelery.tasks import first2years
from gwcelery.tools.local import read_config
from gwcelery.util.redis_server import free_port

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timeline import TaskEvents, print_timeline  # noqa: E402

PREFIX = 'lvalert:'


class Recorder:
    """Times of the server's alerts (Redis pub/sub) and of the VOEvents
    the GCN client receives."""

    def __init__(self, redis_url, gcn_port):
        self.lock = threading.Lock()
        self.alerts = []  # (time, node, alert)
        self.voevents = []  # (time, GraceID, payload)
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(PREFIX + '*')
        threading.Thread(target=self._read_alerts, daemon=True).start()
        threading.Thread(
            target=gcn.listen, daemon=True,
            kwargs=dict(host='127.0.0.1', port=gcn_port,
                        handler=self._voevent)).start()

    def _read_alerts(self):
        try:
            for message in self.pubsub.listen():
                now = time.time()
                node = message['channel'].decode()[len(PREFIX):]
                with self.lock:
                    self.alerts.append(
                        (now, node, json.loads(message['data'])))
        except redis.ConnectionError:
            pass  # the stack stopped

    def _voevent(self, payload, root):
        now = time.time()
        params = {p.get('name'): p.get('value') for p in root.iter('Param')}
        with self.lock:
            self.voevents.append((now, params, payload))

    def first_alert(self, predicate):
        with self.lock:
            return next((t for t, node, alert in self.alerts
                         if predicate(node, alert)), None)

    def voevent(self, superevent_id):
        """Time of the first VOEvent about ``superevent_id`` that has a
        sky map (one sent without, because BAYESTAR outlasted
        :obj:`~gwcelery.conf.preliminary_alert_timeout`, is not the alert
        measured here)."""
        with self.lock:
            return next((t for t, params, _ in self.voevents
                         if params.get('GraceID') == superevent_id
                         and 'skymap_fits' in params), None)

    def notice(self, superevent_id, alert_type):
        """Time of the first ``alert_type`` VOEvent about
        ``superevent_id``."""
        with self.lock:
            return next((t for t, params, _ in self.voevents
                         if params.get('GraceID') == superevent_id
                         and params.get('AlertType') == alert_type), None)

    def without_skymap(self, superevent_id):
        with self.lock:
            return any(params.get('GraceID') == superevent_id
                       and 'skymap_fits' not in params
                       for _, params, _ in self.voevents)


def wait(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None:
            return value
        time.sleep(interval)
    return None


def start_stack(data_dir):
    """Start ``gwcelery local`` on free ports; return the process and its
    settings."""
    ports = {name: free_port() for name in ('gracedb', 'flower', 'gcn')}
    log = open(os.path.join(data_dir, 'local.log'), 'wb')
    process = subprocess.Popen(
        [sys.executable, '-m', 'gwcelery', 'local', '--no-mock',
         '--data-dir', data_dir, '--gracedb-port', str(ports['gracedb']),
         '--flower-port', str(ports['flower']),
         '--gcn-port', str(ports['gcn'])],
        stdout=log, stderr=subprocess.STDOUT)
    up = wait(lambda: True if b'gwcelery local is up' in open(
        os.path.join(data_dir, 'local.log'), 'rb').read() else None, 180, 0.5)
    if up is None or process.poll() is not None:
        process.terminate()
        raise RuntimeError('gwcelery local did not start: see '
                           f'{data_dir}/local.log')
    return process, read_config(data_dir)


def listeners_ready(settings):
    """Whether the LVAlert listener subscribed to the nodes (Redis)."""
    client = redis.Redis.from_url(settings['broker_url'])
    try:
        counts = dict(client.pubsub_numsub(PREFIX + 'cbc_gstlal',
                                           PREFIX + 'superevent'))
        return True if all(counts.values()) else None
    finally:
        client.close()


def run_event(number, pipeline, gracedb, recorder, timeout):
    """Upload signal ``number`` as ``pipeline`` now; return its row."""
    coinc = first2years.load_candidate(number, pipeline)
    coinc = first2years.shift_coinc(
        coinc, first2years.now_gps() - 1 - first2years.coinc_time(coinc))
    o4_style = first2years.UPLOAD_STYLES[pipeline]['psds_in_coinc']
    if o4_style:
        coinc = first2years.embed_psds(coinc, first2years.load_psd())
    start = time.time()
    event = gracedb.events.create(filename='coinc.xml', filecontents=coinc,
                                  group='CBC', pipeline=pipeline,
                                  search='AllSky')
    graceid = event['graceid']
    if not o4_style:
        gracedb.events[graceid].logs.create(
            comment='PSD', filename='psd.xml.gz',
            filecontents=first2years.load_psd(), tags=['psd'])

    def superevent_new(node, alert):
        return (node == 'superevent' and alert['alert_type'] == 'new'
                and alert['object']['preferred_event'] == graceid)
    t_superevent = wait(lambda: recorder.first_alert(superevent_new),
                        timeout)
    def skymap_log(node, alert):
        return (alert['uid'] == graceid and alert['alert_type'] == 'log'
                and alert['data'].get('filename')
                == 'bayestar.multiorder.fits')

    def failure_log(node, alert):
        return (alert['uid'] == graceid and alert['alert_type'] == 'log'
                and alert['data'].get('comment', '').startswith(
                    f'Sky localization of {graceid} failed'))
    wait(lambda: recorder.first_alert(skymap_log)
         or recorder.first_alert(failure_log), timeout)
    t_skymap = recorder.first_alert(skymap_log)
    row = {'signal': number, 'graceid': graceid, 'start': start}
    if recorder.first_alert(failure_log) is not None:
        row['failed'] = True
    if t_superevent is None or t_skymap is None:
        return row
    superevent_id = next(
        alert['uid'] for _, node, alert in recorder.alerts
        if superevent_new(node, alert))
    t_voevent = wait(lambda: recorder.voevent(superevent_id), timeout)
    skymap = gracedb.events[graceid].files['bayestar.multiorder.fits'].get()
    with fits.open(io.BytesIO(skymap.read())) as hdus:
        runtime = float(hdus[1].header['RUNTIME'])
    # Let the plots finish so that the next localisation finds the openmp
    # worker idle.
    wait(lambda: recorder.first_alert(
        lambda node, alert: alert['uid'] == superevent_id
        and alert['alert_type'] == 'log'
        and alert['data'].get('filename') == 'bayestar.volume.png'),
        timeout)
    row.update(superevent_id=superevent_id,
               superevent=t_superevent - start, skymap=t_skymap - start,
               bayestar=runtime, before=t_skymap - start - runtime,
               fallback=recorder.without_skymap(superevent_id))
    if t_voevent is not None:
        row.update(voevent=t_voevent - start, after=t_voevent - t_skymap,
                   overhead=t_voevent - start - runtime)
    return row


def run_signoff(superevent_id, status, gracedb, recorder, timeout):
    """Sign off a superevent (once its ADVREQ is there); return the time
    from the ADVOK/ADVNO alert to the Initial/Retraction at the client."""
    def label_added(name):
        return lambda node, alert: (
            alert['uid'] == superevent_id
            and alert['alert_type'] == 'label_added'
            and alert['data'].get('name') == name)
    if wait(lambda: recorder.first_alert(label_added('ADVREQ')),
            timeout) is None:
        return {}
    gracedb.superevents[superevent_id].signoff('ADV', status, 'benchmark')
    t_label = wait(lambda: recorder.first_alert(label_added(f'ADV{status}')),
                   timeout)
    alert_type = 'Initial' if status == 'OK' else 'Retraction'
    t_notice = wait(lambda: recorder.notice(superevent_id, alert_type),
                    timeout)
    if t_label is None or t_notice is None:
        return {}
    return {alert_type.lower(): t_notice - t_label}


def report(rows):
    columns = ('superevent', 'skymap', 'voevent', 'bayestar', 'before',
               'after', 'overhead')
    print(f"{'signal':>6} {'event':>7} {'superevent':>11} "
          + ' '.join(f'{name:>10}' for name in columns[1:]))
    for row in rows:
        cells = ' '.join(
            f'{row[name]:10.2f}' if name in row else f'{"-":>10}'
            for name in columns[1:])
        superevent = (f"{row['superevent']:11.2f}" if 'superevent' in row
                      else f'{"-":>11}')
        print(f"{row['signal']:>6} {row['graceid']:>7} {superevent} {cells}")
    print('seconds from the start of the upload; overhead = voevent - '
          'bayestar = before (upload to sky map uploaded, less BAYESTAR) '
          '+ after (sky map uploaded to VOEvent at the client)')
    fallbacks = sum(bool(row.get('fallback')) for row in rows)
    if fallbacks:
        print(f'{fallbacks} superevent(s) also got a notice without sky map '
              '(BAYESTAR outlasted preliminary_alert_timeout)')
    failed = sum(bool(row.get('failed')) for row in rows)
    if failed:
        print(f'{failed} localisation(s) failed (see the event logs)')
    complete = [row for row in rows if 'overhead' in row]
    print(f'{len(complete)} of {len(rows)} candidates reached the GCN '
          'client')
    for name in columns:
        values = [row[name] for row in complete]
        if values:
            print(f'  median {name:10} {statistics.median(values):7.2f} s'
                  f'   (min {min(values):.2f}, max {max(values):.2f})')
    if complete:
        overheads = sorted(row['overhead'] for row in complete)
        p50 = statistics.median(overheads)
        p99 = overheads[math.ceil(0.99 * len(overheads)) - 1]
        print(f'figure of merit: pipeline overhead p50 = {p50:.2f} s '
              f'(goal < 0.3 s: {"met" if p50 < 0.3 else "NOT met"}), '
              f'p99 = {p99:.2f} s (goal < 0.6 s: '
              f'{"met" if p99 < 0.6 else "NOT met"})')
    for name, label in (('initial', 'ADVOK'), ('retraction', 'ADVNO')):
        values = [row[name] for row in rows if name in row]
        if values:
            p50 = statistics.median(values)
            print(f'{label} applied -> {name} at the client: p50 '
                  f'{p50:.2f} s over {len(values)} (min {min(values):.2f}, '
                  f'max {max(values):.2f}; goal < 1 s: '
                  f'{"met" if p50 < 1 else "NOT met"})')


def alert_timeline(row, recorder, events):
    """Print the per-step timeline of one candidate, from its upload to
    its preliminary VOEvent at the client."""
    start = row['start']
    end = start + row['voevent']
    ids = {row['graceid'], row['superevent_id']}
    with recorder.lock:
        marks = [(t, f"alert {node}: {alert['alert_type']} {alert['uid']} "
                  + (alert['data'].get('filename') or alert['data'].get(
                      'name') or '' if alert['alert_type'] != 'new'
                     else ''))
                 for t, node, alert in recorder.alerts
                 if alert['uid'] in ids and start <= t <= end]
    marks.append((start + row['skymap'] - row['bayestar'],
                  f"(BAYESTAR's own run would start here: "
                  f"{row['bayestar']:.2f} s)"))
    marks.append((end, 'preliminary VOEvent at the GCN client'))
    # Under load the task events reach the benchmark late: let them in.
    wait(lambda: True if any(task['first'] >= end - 1 for task in
                             events.between(start, end)) else None, 10)
    print_timeline(
        f"timeline of {row['graceid']} / {row['superevent_id']} (overhead "
        f"{row['overhead']:.2f} s; seconds from the start of the upload; "
        'wait = queued to started)',
        events.between(start, end), marks, start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--events', type=int, default=6,
                        help='number of candidates (signals are cycled)')
    parser.add_argument('--pipeline', default='gstlal',
                        choices=first2years.PIPELINES)
    parser.add_argument('--timeout', type=float, default=300,
                        help='seconds to wait for each milestone')
    parser.add_argument('--every-timeline', action='store_true',
                        help='print each candidate\'s timeline as it '
                        'completes (else only the median one\'s)')
    parser.add_argument('--data-dir', help='keep the stack\'s data and logs '
                        'here (default: a temporary directory)')
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix='alert-latency-')
    os.makedirs(data_dir, exist_ok=True)
    print(f'starting gwcelery local in {data_dir} ...', flush=True)
    process, settings = start_stack(data_dir)
    try:
        if wait(lambda: listeners_ready(settings), 90, 0.5) is None:
            raise RuntimeError('the LVAlert listener did not subscribe')
        recorder = Recorder(settings['broker_url'], settings['gcn_bind_port'])
        gracedb = Client(settings['gracedb_url'], force_noauth=True)
        time.sleep(2)  # the pygcn client connects to the broker
        events = TaskEvents(settings['broker_url'])
        rows = []
        for index in range(args.events):
            number = index % first2years.NUM_SIGNALS
            row = run_event(number, args.pipeline, gracedb, recorder,
                            args.timeout)
            if 'superevent_id' in row:
                row.update(run_signoff(
                    row['superevent_id'], 'OK' if index % 2 == 0 else 'NO',
                    gracedb, recorder, args.timeout))
            rows.append(row)
            print(f'  {row}', flush=True)
            if args.every_timeline and 'overhead' in row:
                alert_timeline(row, recorder, events)
        report(rows)
        complete = sorted((row for row in rows if 'overhead' in row),
                          key=lambda row: row['overhead'])
        if complete:
            alert_timeline(complete[len(complete) // 2], recorder, events)
        print('load average (1, 5, 15 min): '
              + ', '.join(f'{x:.1f}' for x in os.getloadavg())
              + f' on {os.cpu_count()} cores')
    finally:
        logging.getLogger('gcn').setLevel(logging.CRITICAL)
        process.terminate()
        process.wait(60)


if __name__ == '__main__':
    main()
