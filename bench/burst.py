"""Burst benchmark: several signals close together, each uploaded by
several searches, with the whole local stack.

Starts ``gwcelery local --no-mock`` as ``bench/alert_latency.py`` does
and connects pygcn's client to its VOEvent broker. Then

1. *alone*: each signal is uploaded by its loudest search only, once the
   openmp worker is idle: the time from the upload to its preliminary
   VOEvent (with a sky map) at the client is its latency alone;
2. *burst*: the signals are uploaded ``--spacing`` seconds apart (three
   within 10 s by default), each by every search, the loudest last (so
   that arrival order would put it behind its superevent's other
   localisations); each signal's latency runs from its first upload to
   its preliminary at the client.

It prints, per signal, both latencies and their ratio (goal: at most
1.3), and the order in which the openmp worker ran BAYESTAR (from its
log), each run marked with its signal and whether its event is the one
the alert uses. Without the ordering of
:mod:`gwcelery.tasks.localization_order`, the openmp worker ran the
localisations in arrival order: the third signal's alert waited for every
localisation of the signals before it. Last it prints the floor that no
order can beat: the openmp worker runs one localisation at a time, each
signal's alert needs one, so the alert that comes last comes no sooner
than their run times added up after the first upload.

    python bench/burst.py [--signals 2 3 0] [--spacing 5]
"""

import argparse
import functools
import os
import re
import sys
import tempfile
import time

from gracedb_sdk import Client

from gwcelery.gracedb_server import GraceDbServer
from gwcelery.tasks import first2years, superevent_rules

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alert_latency import (  # noqa: E402
    Recorder,
    listeners_ready,
    start_stack,
    wait,
)

BAYESTAR_LINE = re.compile(
    r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+).*\] (G\d+): BAYESTAR with')
BAYESTAR_DONE = re.compile(r'\] (G\d+): BAYESTAR finished in ([0-9.]+) s')


def upload(gracedb, number, pipeline, offset):
    """Upload signal ``number`` as ``pipeline`` does
    (:data:`gwcelery.tasks.first2years.UPLOAD_STYLES`: ``coinc.xml`` with
    the PSDs inside, or then ``psd.xml.gz``), its time moved to now minus
    one second plus ``offset``; return the event."""
    coinc = first2years.load_candidate(number, pipeline)
    coinc = first2years.shift_coinc(
        coinc, first2years.now_gps() - 1 + offset
        - first2years.coinc_time(coinc))
    o4_style = first2years.UPLOAD_STYLES[pipeline]['psds_in_coinc']
    if o4_style:
        coinc = first2years.embed_psds(coinc, first2years.load_psd())
    event = gracedb.events.create(filename='coinc.xml', filecontents=coinc,
                                  group='CBC', pipeline=pipeline,
                                  search='AllSky')
    if not o4_style:
        gracedb.events[event['graceid']].logs.create(
            comment='PSD', filename='psd.xml.gz',
            filecontents=first2years.load_psd(), tags=['psd'])
    return event


def pipelines_by_rank(signals):
    """For each signal, its searches quietest first (the superevent
    manager's ranking, completeness aside), read from the events a
    throw-away GraceDB server makes of their uploads."""
    order = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        server = GraceDbServer(tmpdir, port=0).start()
        try:
            client = Client(server.url, force_noauth=True)
            for number in signals:
                events = [client.events.create(
                    filename='coinc.xml', group='CBC', pipeline=pipeline,
                    search='AllSky',
                    filecontents=first2years.load_candidate(number,
                                                            pipeline))
                    for pipeline in first2years.PIPELINES]
                events.sort(key=lambda event: superevent_rules.ranking_key(
                    event)[1:])
                order[number] = [event['pipeline'] for event in events]
        finally:
            server.stop()
    return order


def superevent_of(recorder, graceid):
    """The id of the superevent that ``graceid`` created or joined, from
    the recorded alerts (``None`` if not yet)."""
    with recorder.lock:
        for _, node, alert in recorder.alerts:
            if node != 'superevent':
                continue
            obj = alert['object']
            if (obj.get('preferred_event') == graceid
                    or graceid in (obj.get('gw_events') or ())):
                return alert['uid']
    return None


def preliminary_time(recorder, graceids, timeout):
    """Wait for the preliminary VOEvent (with a sky map) of the superevent
    of ``graceids``; return its arrival time (wall) and the superevent."""
    superevent_id = wait(lambda: next(
        filter(None, (superevent_of(recorder, g) for g in graceids)), None),
        timeout)
    if superevent_id is None:
        return None, None
    return wait(lambda: recorder.voevent(superevent_id), timeout), \
        superevent_id


def volume_plot_time(recorder, superevent_id):
    """When the volume plot of ``superevent_id`` was uploaded (or
    ``None``)."""
    return recorder.first_alert(
        lambda node, alert: alert['uid'] == superevent_id
        and alert['alert_type'] == 'log'
        and alert['data'].get('filename') == 'bayestar.volume.png')


def bayestar_order(data_dir):
    """The graceids in the order the openmp worker started BAYESTAR."""
    path = os.path.join(data_dir, 'logs', 'worker-openmp.log')
    with open(path, errors='replace') as f:
        return [match.group(3) for match in map(BAYESTAR_LINE.match, f)
                if match]


def bayestar_run_times(data_dir):
    """BAYESTAR's run time (s) of each event the openmp worker localised."""
    path = os.path.join(data_dir, 'logs', 'worker-openmp.log')
    with open(path, errors='replace') as f:
        return {match.group(1): float(match.group(2))
                for match in map(BAYESTAR_DONE.search, f) if match}


def serial_floor(burst, alone, run_times):
    """What the burst cannot beat: each signal's alert needs one
    localisation (at least its quickest of the burst) and the openmp
    worker runs them one after another from the first upload, so the
    alert finished last comes ``work`` s after the first upload or later.
    Returns ``work`` and the least ratio that the signal whose alert
    that is can have, whichever it is."""
    needed = [min(run_times[g] for g in result['graceids']
                  if g in run_times) for result in burst.values()]
    first = min(result['start'] for result in burst.values())
    work = sum(needed)
    ratio = min((first + work - result['start']) / alone[number]
                for number, result in burst.items())
    return work, ratio


def alone_latencies(ranked, gracedb, recorder, timeout):
    """Latency of each signal uploaded by its loudest search alone."""
    latencies = {}
    for number, pipelines in ranked.items():
        start = time.time()
        event = upload(gracedb, number, pipelines[-1], 0)
        arrived, superevent_id = preliminary_time(
            recorder, [event['graceid']], timeout)
        latencies[number] = None if arrived is None else arrived - start
        # The volume plot runs on the openmp worker too: let it finish.
        wait(functools.partial(volume_plot_time, recorder, superevent_id),
             timeout)
        print(f'  alone: signal {number} ({pipelines[-1]}, '
              f'{event["graceid"]}): {latencies[number] or 0:.2f} s',
              flush=True)
    return latencies


def run_burst(ranked, spacing, gracedb, recorder, timeout):
    """Upload the signals ``spacing`` s apart, each by every search, the
    loudest last; return per signal its start time and graceids."""
    uploads = {}
    t0 = time.time()
    for index, (number, order) in enumerate(ranked.items()):
        delay = t0 + index * spacing - time.time()
        if delay > 0:
            time.sleep(delay)
        start = time.time()
        events = [upload(gracedb, number, pipeline, 0) for pipeline in order]
        uploads[number] = (start, [event['graceid'] for event in events])
        print(f'  burst: signal {number} at +{start - t0:.1f} s by '
              + ', '.join(f'{p} {e["graceid"]}'
                          for p, e in zip(order, events, strict=True)),
              flush=True)
    results = {}
    for number, (start, graceids) in uploads.items():
        arrived, superevent_id = preliminary_time(recorder, graceids,
                                                  timeout)
        results[number] = dict(start=start, graceids=graceids,
                               superevent_id=superevent_id,
                               latency=None if arrived is None
                               else arrived - start)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--signals', type=int, nargs='+', default=[2, 3, 0],
                        help='signal numbers, in upload order')
    parser.add_argument('--spacing', type=float, default=5.0,
                        help='seconds between the signals of the burst')
    parser.add_argument('--timeout', type=float, default=900)
    parser.add_argument('--data-dir')
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix='burst-')
    os.makedirs(data_dir, exist_ok=True)
    print(f'starting gwcelery local in {data_dir} ...', flush=True)
    process, settings = start_stack(data_dir)
    try:
        if wait(lambda: listeners_ready(settings), 90, 0.5) is None:
            raise RuntimeError('the LVAlert listener did not subscribe')
        recorder = Recorder(settings['broker_url'],
                            settings['gcn_bind_port'])
        gracedb = Client(settings['gracedb_url'], force_noauth=True)
        time.sleep(2)
        ranked = pipelines_by_rank(args.signals)
        alone = alone_latencies(ranked, gracedb, recorder,
                                args.timeout)
        runs_before = len(bayestar_order(data_dir))
        burst = run_burst(ranked, args.spacing, gracedb, recorder,
                          args.timeout)
        print('signal  alone (s)  burst (s)  ratio (goal <= 1.3)')
        for number in args.signals:
            latency = burst[number]['latency']
            ratio = (latency / alone[number]
                     if latency and alone[number] else None)
            print(f'{number:6d} {alone[number] or 0:10.2f} '
                  f'{latency or 0:10.2f}  '
                  + (f'{ratio:.2f}' if ratio else '-'))
        owner = {g: n for n, r in burst.items() for g in r['graceids']}
        preferred = {r['graceids'][-1] for r in burst.values()}
        order = bayestar_order(data_dir)[runs_before:]
        print('BAYESTAR runs of the burst in order (* = the loudest event, '
              'which the alert uses): '
              + ', '.join(f'{g}{"*" if g in preferred else ""}'
                          f'(s{owner.get(g, "?")})' for g in order))
        work, ratio = serial_floor(burst, alone,
                                   bayestar_run_times(data_dir))
        print(f'floor: one localisation per signal takes {work:.1f} s in '
              'all on the openmp worker, so the last alert comes at least '
              f'{work:.1f} s after the first upload, and its signal\'s '
              f'ratio is at least {ratio:.2f}')
        print('load average (1, 5, 15 min): '
              + ', '.join(f'{x:.1f}' for x in os.getloadavg())
              + f' on {os.cpu_count()} cores')
    finally:
        process.terminate()
        process.wait(60)


if __name__ == '__main__':
    main()
