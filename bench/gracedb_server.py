"""Benchmark of the local GraceDB server through gracedb-sdk.

Starts ``gwcelery gracedb-server`` in a subprocess (empty data directory,
no alert transport) and measures, sequentially and with several client
threads:

* event creation with a ``coinc.xml`` upload (``client.events.create``);
* a superevent query over a time range (``client.superevents.search``)
  on a database holding ``--superevents`` superevents.

Prints requests per second and the median and 99th-percentile latency.

    python bench/gracedb_server.py [--events 300] [--queries 300]
"""

import argparse
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from gracedb_sdk import Client

COINC = os.path.join(os.path.dirname(__file__), os.pardir, 'tests', 'data',
                     'gracedb', 'coinc.xml')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def start_server(data_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, '-m', 'gwcelery', 'gracedb-server', '--host',
         '127.0.0.1', '--port', str(port), '--data-dir', data_dir,
         '--alerts', 'none', '--log-level', 'WARNING'],
        stdout=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/api/'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError('the server did not start')


def measure(operation, count, threads):
    """Run ``operation(i)`` ``count`` times on ``threads`` threads; return
    (requests per second, latencies in seconds)."""
    latencies = []

    def timed(i):
        start = time.perf_counter()
        operation(i)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(timed, i) for i in range(count)]:
            future.result()
    return count / (time.perf_counter() - start), latencies


def report(name, threads, rate, latencies):
    latencies = sorted(latencies)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f'{name:<34} {threads:>7} {rate:>8.1f} {1e3 * p50:>9.1f} '
          f'{1e3 * p99:>9.1f}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=300,
                        help='event creations per run')
    parser.add_argument('--queries', type=int, default=300,
                        help='superevent queries per run')
    parser.add_argument('--superevents', type=int, default=200,
                        help='superevents in the database for the queries')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 4],
                        help='client thread counts to run')
    args = parser.parse_args()
    with open(COINC, 'rb') as f:
        coinc = f.read()

    with tempfile.TemporaryDirectory() as data_dir:
        process, url = start_server(data_dir)
        try:
            local = __import__('threading').local()

            def client():
                if not hasattr(local, 'client'):
                    local.client = Client(url, force_noauth=True)
                return local.client

            def create_event(i):
                client().events.create(
                    filename='coinc.xml', filecontents=coinc, group='CBC',
                    pipeline='gstlal', search='AllSky')

            def query(i):
                t_0 = 1e9 + 100 * (i % args.superevents)
                found = list(client().superevents.search(
                    query=f'{t_0 - 150} .. {t_0 + 150}'))
                assert len(found) >= 2, found

            # Superevents 100 s apart, each with its own event.
            for i in range(args.superevents):
                event = client().events.create(
                    filename='e.json', group='CBC', pipeline='pycbc',
                    filecontents=b'{"gpstime": %f, "far": 1e-9}'
                    % (1e9 + 100 * i))
                client().superevents.create(
                    t_start=1e9 + 100 * i - 1, t_0=1e9 + 100 * i,
                    t_end=1e9 + 100 * i + 1,
                    preferred_event=event['graceid'])

            print(f'GraceDB server benchmark ({os.cpu_count()} CPUs), '
                  f'through gracedb-sdk over HTTP')
            print(f"{'operation':<34} {'threads':>7} {'req/s':>8} "
                  f"{'p50 (ms)':>9} {'p99 (ms)':>9}")
            for threads in args.threads:
                report('create event (coinc.xml upload)', threads,
                       *measure(create_event, args.events, threads))
            for threads in args.threads:
                report(f'superevent query ({args.superevents} in DB)',
                       threads, *measure(query, args.queries, threads))
        finally:
            process.terminate()
            process.wait(20)


if __name__ == '__main__':
    main()
