"""Every fault bench in one command, one table.

Runs, one after another, each on its own stack of real processes:

* :mod:`bench.faults_listener`: the LVAlert listener killed, Redis killed
  under it, hostile messages on the Redis alert stream;
* :mod:`bench.faults_workers`: a pool process, then the main process, of
  each worker (``celery``, ``openmp``, ``superevent``, ``exttrig``)
  SIGKILLed while it holds tasks;
* :mod:`bench.faults_gcn`: hostile VOEvent packets between GCN notices;
* :mod:`bench.faults_gracedb`: GraceDB down, or behind a faulty proxy,
  while GRB notices arrive;
* :mod:`bench.faults_pipeline`: ``gwcelery local`` with superevents in
  flight when Redis is SIGKILLed, and stopped and started again during a
  BAYESTAR localisation;
* :mod:`bench.faults_netns`: a worker on a host of its own (a network
  namespace) cut off from Redis for a minute;
* :mod:`bench.faults_transports`: hostile messages on every transport;
* :mod:`bench.faults_console`: a console action double-clicked in a real
  browser and POSTed in parallel.

Each bench runs in a process of its own, with the options that its own
command line has by default, shortened where noted below
(:data:`SUITE_OPTIONS`) so that the whole suite takes under 15 minutes on
a 2-core machine. A bench whose
module or system requirement is missing prints a row saying so; one that
fails prints its error and the suite goes on.

    python bench/faults.py [--only NAME ...] [--skip NAME ...]
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

from bench.table import print_table  # noqa: E402

#: How a bench's process starts the line that gives its rows.
ROWS_MARK = 'ROWS '

#: The benches, in the order they run.
BENCHES = ('listener', 'workers', 'gcn', 'gracedb', 'pipeline', 'netns',
           'transports', 'console')

#: Options of each bench in the suite, where they differ from its own
#: defaults: fewer trials of the scenarios that the issue does not ask
#: to repeat, so that the suite stays under 15 minutes.
SUITE_OPTIONS = {
    'listener': ['--trials', '2'],
    'workers': ['--trials', '1', '--tasks', '20'],
    'gracedb': ['--trials', '1'],
}


def bench_args(module, name):
    """The options of `module` for the suite."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(SUITE_OPTIONS.get(name, []))


def run_one(name):
    """Run one bench in this process; print its rows as JSON, last."""
    try:
        module = importlib.import_module(f'bench.faults_{name}')
    except ImportError as error:
        rows = [(name, 0, 0, 0, 0, 0, float('nan'), f'not run: {error}')]
    else:
        try:
            rows = module.run(bench_args(module, name))
        except Exception as error:  # report it and go on with the others
            traceback.print_exc()
            rows = [(name, 0, 0, 0, 0, 0, float('nan'),
                     f'FAILED: {type(error).__name__}: {error}')]
    print(ROWS_MARK + json.dumps(rows), flush=True)


def run_bench(name):
    """Run one bench in a process of its own (each sets up the app for
    its own Redis, and must not inherit another's connections); return
    its rows and the seconds it took."""
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, __file__, '--one', name], stdout=subprocess.PIPE,
        text=True, cwd=ROOT)
    rows = None
    for line in process.stdout:
        if line.startswith(ROWS_MARK):
            rows = json.loads(line[len(ROWS_MARK):])
        else:
            print(line, end='', flush=True)
    process.wait()
    if rows is None:
        rows = [(name, 0, 0, 0, 0, 0, float('nan'),
                 f'FAILED: exit status {process.returncode}')]
    return rows, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', nargs='+', choices=BENCHES)
    parser.add_argument('--skip', nargs='+', choices=BENCHES, default=())
    parser.add_argument('--one', choices=BENCHES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.one)
    names = [name for name in args.only or BENCHES if name not in args.skip]
    rows = []
    start = time.monotonic()
    for name in names:
        print(f'== {name}', flush=True)
        bench_rows, seconds = run_bench(name)
        print_table(bench_rows)
        print(f'({name}: {seconds:.0f} s)', flush=True)
        rows.extend(bench_rows)
    print('== all')
    print_table(rows)
    print(f'suite: {time.monotonic() - start:.0f} s')


if __name__ == '__main__':
    main()
