"""A worker on its own host cut off from Redis (short version of
``bench/faults_netns.py``): worker A in a network namespace of its own,
joined by a veth pair whose root side goes down for 8 s, with short
leases. The task A runs is done by worker B while A is still cut off;
nothing is lost, no notice is queued twice, and A rides out the cut and
takes tasks again."""

import argparse
import math
import subprocess

import pytest

from bench import faults_netns as bench
from gwcelery import app

from .conftest import drop_connections
from .test_broker_lease import SHORT_LEASES

pytestmark = pytest.mark.integration

CUT = 8.0
RUN = 1.0


def netns_denied():
    """None if this process may create a network namespace and a veth
    pair (the test needs root and ``ip``), else why not."""
    try:
        bench.Link().create().delete()
    except (OSError, subprocess.CalledProcessError) as exc:
        return ('cannot create a network namespace and a veth pair with '
                f'ip netns: {getattr(exc, "stderr", None) or exc}').strip()
    return None


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """The namespace, Redis, worker A inside and B outside; the app's
    broker and backend settings are restored afterwards."""
    denied = netns_denied()
    if denied:
        pytest.skip(denied)
    for key in ('broker_url', 'result_backend'):
        monkeypatch.setitem(app.conf, key, app.conf[key])
        monkeypatch.setenv(f'CELERY_{key.upper()}', app.conf[key])
    bench.clean_leftovers()
    stack = bench.Stack(str(tmp_path), SHORT_LEASES)
    yield stack
    stack.close()
    drop_connections(app)


def test_a_cut_off_worker_loses_nothing_and_rides_it_out(stack):
    args = argparse.Namespace(cut=CUT, run=RUN, etas=(CUT / 6, 2 * CUT / 3),
                              at_cut=4, notices=8, wait=60)
    rows = {row[0]: row for row in bench.trial(stack, args, 0)}
    held = len(args.etas)  # the running task, after the countdowns
    # Done first by B, once its lease lapsed, while A was still cut off.
    assert rows['running held by A'][5] < CUT, rows
    runs = bench.records(stack, bench.DONE_KEY)[held]
    assert min(runs, key=lambda run: run[1])[0] == stack.b.name, rows
    for group, sent, handled, lost, *_ in rows.values():
        assert (handled, lost) == (sent, 0), rows[group]
    assert rows['gcn.send at the cut'][4] == 0, rows
    after = rows['A after the link is back']
    assert not math.isnan(after[5]), after  # A ran a new task
    assert stack.a.process.poll() is None
    assert 'Unrecoverable error' not in stack.a.log()
