"""Benchmark of the superevent manager with the local stack.

Starts a private Redis, ``gwcelery gracedb-server`` (alerts over Redis
pub/sub), a worker running the LVAlert listener and the serial superevent
worker (``-Q superevent --pool solo``, as deployed). Then uploads
``--events`` candidates in clusters of 1 to ``--max-cluster`` events from
distinct searches (gstlal, PyCBC, MBTA, SPIIR as CBC ``coinc.xml``
uploads; cWB, oLIB as JSON), each cluster 300 s after the previous one, as
fast as the server takes them (``--uploaders`` client threads).

An event counts as handled when the server publishes its
``added_to_superevent`` alert. Prints the upload rate, the sustained rate
of events handled, the p50/p99 latency from the start of an event's upload
to that alert, the CPU time per event of each part of the stack (which,
unlike the rates, hardly depends on what else the machine is doing: the
load average is printed too), and the superevent worker's busy time per
event (from its task run times), whose inverse is the worker's capacity.

The listener runs on a queue of its own so that the tasks of other
handlers of the same nodes (the orchestrator's) are queued but not run:
only the superevent path is measured.

    python bench/superevents.py [--events 1000] [--format coinc|json]
        [--rate EVENTS_PER_SECOND] [--pool solo|prefork]

Unpaced, the server takes uploads faster than the two-core machine can
carry them through the whole path, so the queue, hence the latency, grows
until the uploads end; ``--rate`` finds the rate that it sustains.
"""

import argparse
import concurrent.futures
import contextlib
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack import AlertWatcher, Stack  # noqa: E402

from gwcelery.tasks import gracedb  # noqa: E402
from tests.superevent_uploads import coinc_xml, cwb_json  # noqa: E402

#: Searches that report a cluster's signal, in the order they are drawn.
PIPELINES = (('gstlal', 'CBC'), ('pycbc', 'CBC'), ('MBTA', 'CBC'),
             ('spiir', 'CBC'), ('CWB', 'Burst'), ('oLIB', 'Burst'))

#: GPS time of the first cluster, and seconds between clusters.
T0, CLUSTER_SPACING = 1300000000.0, 300.0

TASK_DONE = re.compile(
    r'Task gwcelery\.tasks\.superevents\.handle\[\S+\] succeeded in '
    r'([0-9.e-]+)s')


def plan_events(count, max_cluster, rng):
    """Return [(pipeline, group, gpstime, far, snr)] in upload order."""
    events = []
    cluster = 0
    while len(events) < count:
        size = min(rng.randint(1, max_cluster), count - len(events))
        t_0 = T0 + CLUSTER_SPACING * cluster
        for pipeline, group in rng.sample(PIPELINES, size):
            events.append((pipeline, group, t_0 + rng.uniform(-0.05, 0.05),
                           10 ** rng.uniform(-12, -6), rng.uniform(8, 20)))
        cluster += 1
    return events


def event_file(pipeline, group, gpstime, far, snr, file_format):
    """Return (filename, contents) of the upload of one candidate."""
    if group == 'CBC' and file_format == 'coinc':
        return 'coinc.xml', coinc_xml(gpstime, far, snr)
    if pipeline == 'CWB':
        return 'event.json', cwb_json(gpstime, far, duration=0.1, snr=snr)
    attributes = ({'CoincInspiral': {'snr': snr}} if group == 'CBC' else
                  {'LalInferenceBurst': {'quality_mean': 10.0,
                                         'frequency_mean': 100.0}})
    return 'event.json', json.dumps({
        'gpstime': gpstime, 'far': far, 'instruments': 'H1,L1',
        'extra_attributes': attributes}).encode()


class Arrivals(AlertWatcher):
    """Time at which each event's ``added_to_superevent`` alert arrives."""

    def __init__(self, url):
        self.times = {}
        self.done = threading.Event()
        self.expected = math.inf
        super().__init__(url, marker=b'"added_to_superevent"')

    def on_alert(self, alert, arrived):
        if alert['alert_type'] == 'added_to_superevent':
            self.times.setdefault(alert['uid'], arrived)
            if len(self.times) >= self.expected:
                self.done.set()


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=1000)
    parser.add_argument('--max-cluster', type=int, default=6)
    parser.add_argument('--uploaders', type=int, default=2,
                        help='client threads uploading events')
    parser.add_argument('--format', choices=('coinc', 'json'),
                        default='coinc', help='event file of the CBC '
                        'uploads: coinc.xml as the searches upload, or the '
                        "JSON the local server also reads (cheaper to parse)")
    parser.add_argument('--rate', type=float, help='upload at most this '
                        'many events per second (default: as fast as the '
                        'server takes them)')
    parser.add_argument('--pool', choices=('prefork', 'solo'),
                        default='solo', help='execution pool of the '
                        'superevent worker (concurrency 1 either way)')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--workdir', help='directory for the data and logs '
                        '(kept); a temporary one by default')
    parser.add_argument('--timeout', type=float, default=300,
                        help='seconds to wait for the last event')
    args = parser.parse_args()

    rng = random.Random(args.seed)
    plan = plan_events(args.events, args.max_cluster, rng)
    uploads = [event_file(*event, args.format) for event in plan]
    print(f'superevent benchmark: {len(plan)} events in clusters of 1-'
          f'{args.max_cluster}, CBC as {args.format}, {args.uploaders} '
          f'uploader(s), rate {args.rate or "unlimited"}, {args.pool} '
          f'superevent worker, '
          f'{os.cpu_count()} CPUs, load average before '
          f'{os.getloadavg()[0]:.1f}')

    with contextlib.ExitStack() as cleanup:
        workdir = args.workdir or cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix='bench-superevents-'))
        stack = Stack(workdir, [('superevent', 'superevent', args.pool, 1)])
        try:
            arrivals = Arrivals(stack.redis.url)
            started = {}

            def upload(i):
                pipeline, group = plan[i][:2]
                filename, contents = uploads[i]
                if args.rate:
                    time.sleep(max(0, begin + i / args.rate
                                   - time.perf_counter()))
                start = time.perf_counter()
                event = gracedb.create_event(contents, 'AllSky', pipeline,
                                             group, filename=filename)
                started[event['graceid']] = start

            cpu_before = stack.cpu_seconds()
            begin = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.uploaders) as pool:
                for future in [pool.submit(upload, i)
                               for i in range(len(plan))]:
                    future.result()
            uploaded = time.perf_counter()
            arrivals.expected = len(plan)
            if len(arrivals.times) >= len(plan):
                arrivals.done.set()
            complete = arrivals.done.wait(args.timeout)
            time.sleep(1)  # the no-op tasks of the last changes' alerts
            cpu_after = stack.cpu_seconds()
            arrivals.close()
            with open(stack.logfile('superevent')) as f:
                run_times = [float(match) for match in TASK_DONE.findall(
                    f.read())]
            superevents = gracedb.get_superevents('category: Production')
        finally:
            stack.stop()

    handled = [graceid for graceid in started if graceid in arrivals.times]
    if not complete:
        print(f'only {len(handled)} of {len(plan)} events reached a '
              f'superevent within {args.timeout} s')
    latencies = [arrivals.times[graceid] - started[graceid]
                 for graceid in handled]
    last = max(arrivals.times[graceid] for graceid in handled)
    clusters = len({round((event[2] - T0) / CLUSTER_SPACING)
                    for event in plan})
    print(f'superevents: {len(superevents)} for {clusters} clusters')
    print(f'upload rate:          {len(plan) / (uploaded - begin):7.1f} '
          f'events/s')
    print(f'handled rate:         {len(handled) / (last - begin):7.1f} '
          f'events/s (first upload to last event in its superevent)')
    print(f'upload -> superevent: p50 {1e3 * statistics.median(latencies):.0f}'
          f' ms, p99 {1e3 * percentile(latencies, 0.99):.0f} ms')
    print(f'load average after:   {os.getloadavg()[0]:.1f}')
    busy = sum(run_times)
    cpu = {name: 1e3 * (cpu_after[name] - cpu_before[name]) / len(handled)
           for name in cpu_before}
    print('CPU per event (ms):   ' + ', '.join(
        f'{name} {value:.1f}' for name, value in cpu.items())
        + f'; total {sum(cpu.values()):.1f}')
    print(f'superevent worker:    {len(run_times)} handler runs, '
          f'{1e3 * busy / len(handled):.1f} ms busy per event '
          f'(capacity {len(handled) / busy:.0f} events/s); median run '
          f'{1e3 * statistics.median(run_times):.1f} ms')


if __name__ == '__main__':
    main()
