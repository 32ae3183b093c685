"""Redis killed under the whole pipeline (short version of the
``redis-kill mid-path`` scenario of ``bench/faults_pipeline.py``).

``gwcelery local`` runs; three candidates become superevents; while
BAYESTAR localises the first (the fallback timers of all three and the
events' waits for their searches' products held as countdowns), Redis is
SIGKILLed. The supervisor brings it back on its port with its append-only
file, and every superevent gets its preliminary notice, none twice; no
worker gives up, and the milestones go on.
"""

import time

import pytest

from bench.faults_pipeline import (
    Deployment,
    in_flight,
    kill_redis,
    milestones_after,
    preliminaries,
    running_localisation,
    superevents,
    tally,
    unrecoverable,
    upload_signals,
)

from .listener_support import wait_for

pytestmark = pytest.mark.integration

#: Candidates uploaded (each its own superevent).
SIGNALS = 3


@pytest.fixture
def deployment(tmp_path):
    """``gwcelery local --no-mock``, up; killed at the end (its children
    die with it)."""
    running = Deployment(str(tmp_path / 'local'))
    try:
        running.start()
        yield running
    finally:
        running.stop(timeout=5)


def test_redis_kill_mid_path_loses_and_doubles_nothing(deployment):
    upload_signals(SIGNALS)
    created = wait_for(
        lambda: (now := superevents()) and len(now) == SIGNALS and now,
        120, interval=0.2, message='the superevents')
    # Mid-path: each superevent's fallback timer set, BAYESTAR running.
    wait_for(lambda: f'{SIGNALS} countdown get_superevent' in in_flight(
        deployment) and running_localisation(deployment), 120,
        interval=0.2, message='the timers and a localisation')
    offset = len(deployment.output())

    killed, down, own = kill_redis(deployment)
    assert own is None, 'the supervisor did not restart Redis'
    assert down < 15

    timeout = deployment.settings['preliminary_alert_timeout']
    visibility = deployment.settings['broker_transport_options'][
        'visibility_timeout']
    deadline = max(t for t, _ in created.values()) + timeout + 60

    def all_sent_and_settled():
        # Settled: anything the kill left unacknowledged has come back
        # (visibility time-out, a sweep every 2 s) and run by now.
        notices = deployment.redis(preliminaries)
        return (all(notices.get(sid) for sid in created)
                and time.time() > killed + visibility + 15 and notices)
    notices = wait_for(all_sent_and_settled, deadline - time.time(),
                       interval=1, message='a preliminary for each')
    assert tally(sorted(created), notices) == (SIGNALS, 0, 0), notices
    assert unrecoverable(deployment) == 'none'
    assert milestones_after(deployment, offset, 'redis restarted') > 0
