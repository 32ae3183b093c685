"""Queue routing with real worker processes against a real Redis."""

import pytest

from . import routing_tasks

pytestmark = pytest.mark.integration

INCLUDE = ('--include', 'tests.routing_tasks', '--concurrency', '1')


def test_each_queue_reaches_only_its_worker(start_worker, broker_app):
    for queue in ('celery', 'openmp', 'superevent', 'exttrig'):
        start_worker(queue, queue, *INCLUDE)

    results = {
        'openmp': routing_tasks.on_openmp.delay(),
        'superevent': routing_tasks.on_superevent.delay(),
        'exttrig': routing_tasks.on_exttrig.delay(),
        'celery': routing_tasks.on_default.delay(),
    }
    for queue, result in results.items():
        where = result.get(timeout=30)
        assert where['hostname'].split('@')[0] == queue
        assert where['queue'] == queue


def test_general_worker_never_runs_openmp_tasks(start_worker, broker_app):
    general = start_worker('celery', 'celery', *INCLUDE)
    pending = routing_tasks.on_openmp.delay()
    assert routing_tasks.on_default.delay().get(timeout=30)['queue'] == \
        'celery'
    # The general worker is idle and has taken its own task; the openmp
    # task is still waiting in its queue.
    assert pending.state == 'PENDING'
    assert pending.id not in general.log()

    start_worker('openmp', 'openmp', *INCLUDE)
    assert pending.get(timeout=30)['hostname'].startswith('openmp@')
