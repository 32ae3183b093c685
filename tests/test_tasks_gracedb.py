"""The GraceDB task layer against the local server over real HTTP, and its
retry policy against real failures (503, time-outs, a closed port)."""

import os
import threading
import time

import pytest
import requests

from gwcelery import app
from gwcelery.tasks import gracedb as tasks

from .conftest import DATA_DIR

COINC = os.path.join(DATA_DIR, 'gracedb', 'coinc.xml')
PSD = os.path.join(DATA_DIR, 'gracedb', 'psd.xml.gz')


def read(path):
    with open(path, 'rb') as f:
        return f.read()


class Flaky:
    """WSGI middleware: answer ``status`` to the first ``failures`` requests
    (or, with ``delay``, answer them late), then pass requests through."""

    def __init__(self, app, failures, status='503 Service Unavailable',
                 delay=None):
        self.app = app
        self.failures = failures
        self.status = status
        self.delay = delay
        self.requests = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.requests += 1
            failing = self.requests <= self.failures
        if failing and self.delay is not None:
            time.sleep(self.delay)
        elif failing:
            start_response(self.status, [('Content-Type', 'text/plain')])
            return [b'try again later']
        return self.app(environ, start_response)


@pytest.fixture
def flaky(gracedb):
    """Install a :class:`Flaky` in front of the server: ``flaky(n, ...)``."""
    original = gracedb.app

    def install(failures, **kwargs):
        gracedb.app = Flaky(original, failures, **kwargs)
        return gracedb.app

    yield install
    gracedb.app = original


def test_tasks_against_the_server(gracedb):
    """Every task of the contract, run as Celery runs it (``apply``: in
    this process, with the retry machinery)."""
    def run(task, *args, **kwargs):
        return task.apply(args, kwargs).get()

    event = run(tasks.create_event, read(COINC), 'AllSky', 'gstlal', 'CBC',
                labels=['INJ'], filename='coinc.xml')
    graceid = event['graceid']
    assert (graceid, event['labels']) == ('G0001', ['INJ'])
    assert run(tasks.get_event, graceid)['gpstime'] == event['gpstime']
    assert [e['graceid'] for e in run(tasks.get_events, 'CBC')] == \
        [graceid]
    log = run(tasks.upload, read(PSD), 'psd.xml.gz', graceid, 'PSDs',
              tags=['psd'])
    assert (log['filename'], log['tag_names']) == ('psd.xml.gz', ['psd'])
    assert run(tasks.download, 'psd.xml.gz', graceid) == read(PSD)
    assert run(tasks.download, 'psd.xml.gz,0', graceid) == read(PSD)
    run(tasks.replace_event, graceid, read(COINC))
    assert [entry['filename'] for entry in run(tasks.get_log, graceid)
            if entry['filename']] == ['coinc.xml', 'psd.xml.gz',
                                      'initial.data']

    superevent = run(tasks.create_superevent, graceid, event['gpstime'],
                     event['gpstime'] - 1, event['gpstime'] + 1)
    sid = superevent['superevent_id']
    assert (sid, superevent['category']) == ('S170810a', 'Production')
    second = run(tasks.create_event, read(COINC), 'AllSky', 'pycbc', 'CBC')
    run(tasks.add_event_to_superevent, sid, second['graceid'])
    run(tasks.update_superevent, sid, preferred_event=second['graceid'],
        t_end=event['gpstime'] + 2)
    run(tasks.update_superevent, sid, t_end=event['gpstime'] + 2)  # no-op
    got = run(tasks.get_superevent, sid)
    assert (got['preferred_event'], got['t_end']) == (
        second['graceid'], event['gpstime'] + 2)
    assert [s['superevent_id'] for s in run(
        tasks.get_superevents, f"{event['gpstime'] - 1} .. "
        f"{event['gpstime'] + 1}")] == [sid]

    for object_id in (graceid, sid):
        run(tasks.create_label, 'DQOK', object_id)
        run(tasks.create_label, 'DQOK', object_id)  # already there: fine
        assert run(tasks.get_labels, object_id)[-1] == 'DQOK'
        run(tasks.remove_label, 'DQOK', object_id)
        run(tasks.remove_label, 'DQOK', object_id)  # not there: fine
        assert 'DQOK' not in run(tasks.get_labels, object_id)

    run(tasks.upload, None, None, sid, 'only a message')
    assert run(tasks.get_log, sid)[-1]['comment'] == 'only a message'
    run(tasks.upload, b'\x89PNG', 'sky.png', sid, 'a sky map',
        tags=('sky_loc',))
    for voevent_type in ('preliminary', 'PR'):
        filename = run(tasks.create_voevent, sid, voevent_type,
                       internal=False, open_alert=True)
        assert filename.endswith('-Preliminary.xml')
    assert [v['filename'] for v in run(tasks.get_voevents, sid)] == \
        [f'{sid}-1-Preliminary.xml', f'{sid}-2-Preliminary.xml']


def test_client_rebuilt_for_a_new_url(gracedb, monkeypatch):
    assert tasks.client().url == gracedb.url
    monkeypatch.setitem(app.conf, 'gracedb_url', 'http://127.0.0.1:1/api/')
    assert tasks.client().url == 'http://127.0.0.1:1/api/'


def test_client_after_fork(gracedb):
    parent = tasks.client()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: it must not reuse the parent's session
        os.close(read_end)
        fresh = tasks.client() is not parent
        os.write(write_end, b'1' if fresh else b'0')
        os._exit(0)
    os.close(write_end)
    assert os.read(read_end, 1) == b'1'
    os.close(read_end)
    os.waitpid(pid, 0)


def test_retry_after_503(flaky):
    graceid = tasks.create_event.apply(
        (read(COINC), 'AllSky', 'gstlal', 'CBC')).get()['graceid']
    middleware = flaky(2)
    result = tasks.get_event.apply((graceid,))
    assert result.get()['graceid'] == graceid
    assert middleware.requests == 3


@pytest.mark.parametrize('status', ['502 Bad Gateway',
                                    '504 Gateway Timeout',
                                    '408 Request Timeout',
                                    '429 Too Many Requests',
                                    '500 Internal Server Error'])
def test_retry_after_gateway_errors(flaky, status):
    middleware = flaky(1, status=status)
    assert tasks.get_superevents.apply(('',)).get() == []
    assert middleware.requests == 2


def test_retry_after_timeout(flaky, monkeypatch):
    monkeypatch.setitem(app.conf, 'gracedb_timeout', 0.5)
    middleware = flaky(1, delay=1.5)
    assert tasks.get_superevents.apply(('',)).get() == []
    assert middleware.requests == 2


def test_other_errors_fail_at_once_with_the_message(flaky):
    middleware = flaky(0)
    with pytest.raises(requests.HTTPError) as excinfo:
        tasks.get_event.apply(('G1234',)).get()
    assert 'Event G1234 does not exist.' in str(excinfo.value)
    assert excinfo.value.response.status_code == 404
    with pytest.raises(requests.HTTPError, match='is not a valid choice'):
        tasks.create_event.apply(
            (read(COINC), 'AllSky', 'nonexistent', 'CBC')).get()
    assert middleware.requests == 2


def test_closed_port_gives_up_after_the_retries(monkeypatch):
    monkeypatch.setitem(app.conf, 'gracedb_url', 'http://127.0.0.1:1/api/')
    result = tasks.get_superevent.apply(('S250101a',))
    assert isinstance(result.result, tasks.GraceDbUnavailable)
    assert 'Connection refused' in str(result.result)


@pytest.mark.integration
def test_worker_retries_with_backoff(gracedb, flaky, start_worker):
    """A real worker retries a task after 503s, later, and succeeds."""
    start_worker('gracedb-tasks', 'celery')
    middleware = flaky(2)
    start = time.monotonic()
    result = tasks.get_superevents.delay('')
    assert result.get(timeout=60) == []
    assert middleware.requests == 3
    assert time.monotonic() - start < 30


def test_conflict_retried_only_where_safe(flaky):
    """409 is retried by a read, not by a creation."""
    middleware = flaky(1, status='409 Conflict')
    assert tasks.get_superevents.apply(('',)).get() == []
    assert middleware.requests == 2
    middleware = flaky(1, status='409 Conflict')
    with pytest.raises(requests.HTTPError, match='409'):
        tasks.create_superevent.apply(('G1', 1.0, 0.0, 2.0)).get()
    assert middleware.requests == 1


@tasks.task(shared=False)
def count_superevents(query):
    """A task elsewhere that calls the client directly."""
    return len(list(tasks.client().superevents.search(query=query)))


@tasks.task(shared=False, bind=True)
def tries_of_inline_call(self, query):
    """A task elsewhere that calls a GraceDB task inline; it reports on
    which try it succeeded."""
    tasks.get_superevents(query)
    return self.request.retries


def test_decorated_task_elsewhere_retries(flaky):
    middleware = flaky(2)
    assert count_superevents.apply(('',)).get() == 0
    assert middleware.requests == 3
    assert count_superevents.max_retries == app.conf['gracedb_max_retries']


def test_inline_call_retries_the_calling_task(flaky):
    """The inner task re-raises (it was called inline); the outer one,
    declared with the decorator, retries as a whole."""
    middleware = flaky(1)
    assert tries_of_inline_call.apply(('',)).get() == 1
    assert middleware.requests == 2


def test_decorator_needs_via_for_keys():
    with pytest.raises(TypeError):
        tasks.task('cbc_gstlal', queue='superevent')


class AnswerLost:
    """WSGI middleware: carry out the first POST, then answer 504 as if
    the answer had been lost on the way back; pass the rest through."""

    def __init__(self, app):
        self.app = app
        self.lost = 0

    def __call__(self, environ, start_response):
        if environ['REQUEST_METHOD'] == 'POST' and not self.lost:
            self.lost += 1
            for _ in self.app(environ, lambda *args, **kwargs: None):
                pass
            start_response('504 Gateway Timeout',
                           [('Content-Type', 'text/plain')])
            return [b'upstream timed out']
        return self.app(environ, start_response)


@pytest.fixture
def answer_lost(gracedb):
    original = gracedb.app

    def install():
        gracedb.app = AnswerLost(original)
        return gracedb.app

    yield install
    gracedb.app = original


def test_creations_not_repeated_after_a_lost_answer(answer_lost):
    """A retry after the server did the work but its answer was lost
    finds what the first try made instead of making it again."""
    def run(task, *args, **kwargs):
        return task.apply(args, kwargs).get()

    coinc = read(COINC)
    event = run(tasks.create_event, coinc, 'AllSky', 'gstlal', 'CBC')
    gpstime = event['gpstime']
    lookup = f'pipeline: gstlal {gpstime - 0.01} .. {gpstime + 0.01}'
    answer_lost()
    again = run(tasks.create_event, coinc, 'AllSky', 'pycbc', 'CBC',
                lookup='pipeline: pycbc')
    assert [e['graceid'] for e in run(tasks.get_events, 'pycbc')] == \
        [again['graceid']]
    assert run(tasks.create_event, coinc, 'AllSky', 'gstlal', 'CBC',
               lookup=lookup)['graceid'] == event['graceid']

    sid = run(tasks.create_superevent, event['graceid'], gpstime,
              gpstime - 1, gpstime + 1)['superevent_id']
    answer_lost()
    run(tasks.upload, None, None, sid, 'written once')
    assert [entry['comment'] for entry in run(tasks.get_log, sid)].count(
        'written once') == 1
    answer_lost()
    assert run(tasks.create_voevent, sid, 'PR', internal=False) == \
        f'{sid}-1-Preliminary.xml'
    assert len(run(tasks.get_voevents, sid)) == 1
    # Not a retry: a second VOEvent of the same type is made.
    assert run(tasks.create_voevent, sid, 'PR', internal=False) == \
        f'{sid}-2-Preliminary.xml'
