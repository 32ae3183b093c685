"""Benchmark of the data-quality check: superevent creation to label.

Starts a private Redis, ``gwcelery gracedb-server`` (alerts over Redis
pub/sub), a worker running the LVAlert listener and a general worker
(prefork, ``--concurrency`` processes) for the detchar tasks, each on a
queue of its own so that the other handlers of the superevent nodes are
queued but not run. Writes 4-s mock frames (gwpy, lalframe) of H1, L1 and
V1 around each of ``--superevents`` times, every ``--bad-every``-th with a
cleared observation-intent bit, then creates one superevent (preferred
event: a gstlal JSON event of H1, L1 and V1) per time, ``--rate`` per
second, with times in the past so that the frames are there.

Prints the p50/p99 latency from the start of ``create_superevent`` to the
``label_added`` alert of ``DQOK`` or ``DQV``, the count of each label and
the load average before and after.

    python bench/detchar.py [--superevents 50] [--rate 2] [--concurrency 2]
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack import AlertWatcher, Stack  # noqa: E402

from gwcelery import app  # noqa: E402
from gwcelery.detchar import mockframes  # noqa: E402
from gwcelery.tasks import gracedb  # noqa: E402

#: GPS time of the first superevent, and seconds between superevents.
T0, SPACING = 1300000000, 40

DETCHAR_QUEUE = 'bench-detchar'
LABELS = ('DQOK', 'DQV')


class Labels(AlertWatcher):
    """Arrival time and name of the first DQOK/DQV label of each
    superevent, from the server's alerts."""

    def __init__(self, url):
        self.arrived = {}
        super().__init__(url)

    def on_alert(self, alert, arrived):
        if (alert['alert_type'] == 'label_added'
                and alert['data']['name'] in LABELS):
            self.arrived.setdefault(alert['uid'],
                                    (arrived, alert['data']['name']))


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))]


def write_frames(count, bad_every):
    """Frames around each superevent time; every `bad_every`-th bad."""
    for i in range(count):
        t_0 = T0 + SPACING * i
        segments = ([{'kind': 'dqv', 'start': t_0, 'end': t_0 + 0.5}]
                    if bad_every and i % bad_every == bad_every - 1 else [])
        for detector in ('H1', 'L1', 'V1'):
            for start in range(t_0 - 8, t_0 + 8, 4):
                mockframes.write_frame(app.conf, detector, start, 4,
                                       segments)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--superevents', type=int, default=50)
    parser.add_argument('--rate', type=float, default=2.0,
                        help='superevents created per second')
    parser.add_argument('--concurrency', type=int, default=2,
                        help='processes of the detchar worker')
    parser.add_argument('--bad-every', type=int, default=5)
    parser.add_argument('--timeout', type=float, default=120)
    args = parser.parse_args()
    print(f'detchar benchmark: {args.superevents} superevents, H1 L1 V1, '
          f'{args.rate}/s, detchar worker x{args.concurrency}, '
          f'{os.cpu_count()} CPUs, load average before '
          f'{os.getloadavg()[0]:.2f}')
    with contextlib.ExitStack() as cleanup:
        workdir = cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix='bench-detchar-'))
        stack = Stack(workdir, [('detchar', DETCHAR_QUEUE, 'prefork',
                                 args.concurrency)], {
            'llhoft_glob': os.path.join(workdir, 'llhoft', '{detector}',
                                        '*.gwf'),
            'task_routes': {'gwcelery.tasks.detchar.*':
                            {'queue': DETCHAR_QUEUE}}})
        cleanup.callback(stack.stop)
        warmup = 2 * args.concurrency
        total = warmup + args.superevents
        write_frames(total, args.bad_every)
        labels = Labels(stack.redis.url)
        cleanup.callback(labels.close)
        started = {}
        begin = time.perf_counter()
        for i in range(total):
            time.sleep(max(0, begin + i / args.rate - time.perf_counter()))
            t_0 = T0 + SPACING * i
            event = gracedb.create_event(json.dumps({
                'gpstime': t_0, 'far': 1e-10, 'instruments': 'H1,L1,V1',
            }).encode(), 'AllSky', 'gstlal', 'CBC', filename='event.json')
            start = time.perf_counter()
            superevent = gracedb.create_superevent(
                event['graceid'], t_0, t_0 - 1, t_0 + 1)
            started[superevent['superevent_id']] = start
        deadline = time.monotonic() + args.timeout
        while (len(labels.arrived) < len(started)
               and time.monotonic() < deadline):
            time.sleep(0.2)
        arrived = dict(labels.arrived)
    order = list(started)
    cold = [arrived[sid][0] - started[sid] for sid in order[:warmup]
            if sid in arrived]
    if cold:
        print(f'warm-up ({warmup} superevents, first gwpy import in each '
              f'worker process): max {1e3 * max(cold):.0f} ms')
    measured = order[warmup:]
    latencies = [arrived[sid][0] - started[sid] for sid in measured
                 if sid in arrived]
    arrived = {sid: arrived[sid] for sid in measured if sid in arrived}
    counts = {name: sum(1 for _, label in arrived.values() if label == name)
              for name in LABELS}
    print(f'labelled: {len(latencies)} of {len(measured)} ({counts})')
    if latencies:
        print(f'creation -> label: p50 '
              f'{1e3 * statistics.median(latencies):.0f} ms, p99 '
              f'{1e3 * percentile(latencies, 0.99):.0f} ms')
    print(f'load average after: {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
