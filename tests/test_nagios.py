"""The checks of ``gwcelery nagios`` one by one, against real parts: the
test Redis, messages published by Celery, an eternal task's loop running
in this process, the VOEvent broker's loop, HTTP servers, a worker."""

import http.server
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import redis
from celery.contrib.abortable import AbortableAsyncResult
from click.testing import CliRunner

from gwcelery import app
from gwcelery.tools import nagios
from gwcelery.tools.local import child_environment, write_config
from gwcelery.tools.nagios import Result, State
from gwcelery.util import dead_letters, eternal
from gwcelery.util.eternal import EternalTask
from gwcelery.util.redis_server import free_port
from gwcelery.util.voevent_broker import serve_queue

QUEUES = ['celery', 'openmp', 'superevent', 'exttrig']


def test_the_worst_state_wins_and_unknown_ranks_below_known_problems():
    ok = Result(State.OK, 'fine', ('a=1;;;0',))
    late = Result(State.WARNING, 'listener late', ('b=2s;1;3;0',))
    down = Result(State.CRITICAL, 'broker down')
    failed = Result(State.UNKNOWN, 'check failed')
    skipped = Result(State.UNKNOWN, 'not checked', skipped=True)

    assert nagios.combine([('x', ok), ('y', ok)]) == (
        State.OK, 'NAGIOS OK: x, y OK | a=1;;;0 a=1;;;0')
    assert nagios.combine([('x', ok), ('y', failed)])[0] is State.UNKNOWN
    assert nagios.combine([('y', failed), ('z', late)])[0] is State.WARNING
    state, line = nagios.combine([('x', ok), ('z', late), ('b', down),
                                  ('w', skipped)])
    assert state is State.CRITICAL
    # Problems worst first, skipped checks counted, one line.
    assert line == ('NAGIOS CRITICAL: broker down; listener late; '
                    '1 checks skipped | a=1;;;0 b=2s;1;3;0')
    multi = Result(State.WARNING, 'two\nlines | pipe')
    assert nagios.combine([('m', multi)])[1] == \
        'NAGIOS WARNING: two lines / pipe'


def test_broker_check(redis_url):
    assert nagios.check_broker(redis_url, 1).state is State.OK
    started = time.monotonic()
    result = nagios.check_broker(f'redis://127.0.0.1:{free_port()}/0', 1)
    assert time.monotonic() - started < 2
    assert result.state is State.CRITICAL
    assert 'not answering' in result.message


def test_broker_url_password_is_not_shown():
    result = nagios.check_broker(
        f'redis://:secret@127.0.0.1:{free_port()}/0', 1)
    assert 'secret' not in result.message


def test_queue_lengths_count_every_priority_of_celerys_messages(broker_app):
    options = broker_app.conf.broker_transport_options

    def lengths(warning, critical):
        return nagios.check_queue_lengths(broker_app.conf.broker_url, QUEUES,
                                          options, warning, critical, 1)

    assert lengths(0, 0).state is State.OK
    # No worker consumes: the messages wait in kombu's lists, those of
    # priorities other than 0 in sub-lists.
    for priority in (0, 0, 5, 9):
        broker_app.send_task('tests.nothing', queue='openmp',
                             priority=priority)
    broker_app.send_task('tests.nothing', queue='exttrig')
    result = lengths(1, 10)
    assert result.state is State.WARNING
    assert result.message == 'queue openmp holds 4 messages (limit 1)'
    assert 'queue_openmp=4;1;10;0' in result.perfdata
    assert 'queue_exttrig=1;1;10;0' in result.perfdata
    result = lengths(0, 3)
    assert result.state is State.CRITICAL
    assert result.message == 'queue openmp holds 4 messages (limit 3)'
    assert lengths(4, 10).message == ('queue lengths celery 0, openmp 4, '
                                      'superevent 0, exttrig 1')


# --- eternal listeners ----------------------------------------------------

#: Set by a test to make the loop of :func:`looper` stop going round while
#: its process (and the lock-renewing thread) lives on.
STUCK = threading.Event()


@app.task(base=EternalTask, bind=True, shared=False,
          name='tests.test_nagios.looper')
def looper(self):
    """A listener's loop: go round until aborted, unless stuck."""
    while not self.is_aborted():
        while STUCK.is_set():
            time.sleep(0.05)
        time.sleep(0.01)


def listener_state(warning=0.5, critical=1.5):
    return nagios.check_listener(looper, warning, critical, 1)


def test_a_listener_is_ok_while_its_loop_beats_and_not_while_stuck(
        broker_app, monkeypatch):
    monkeypatch.setattr(eternal, 'HEARTBEAT_INTERVAL', 0.2)
    lock = looper.generate_lock(looper.name)
    store = looper.lock_store
    result = listener_state()
    assert result.state is State.CRITICAL
    assert result.message == (f'{looper.name}: no heartbeat, and no copy '
                              'holds its lock')

    copy = threading.Thread(target=looper.apply, daemon=True,
                            kwargs={'task_id': 'the-copy'})
    copy.start()
    try:
        time.sleep(0.5)
        result = listener_state()
        assert result.state is State.OK, result
        assert result.message.startswith(
            f'{looper.name}: alive, last beat 0.')
        assert result.perfdata[0].startswith(f'{looper.name}_age=0.')

        STUCK.set()  # the loop hangs; the lock is still renewed
        time.sleep(0.8)
        assert listener_state().state is State.WARNING
        time.sleep(1.0)
        result = listener_state()
        assert result.state is State.CRITICAL
        assert store.owner(lock) == 'the-copy'
        assert 'no copy holds its lock' not in result.message

        STUCK.clear()
        time.sleep(0.5)
        assert listener_state().state is State.OK
    finally:
        STUCK.clear()
        AbortableAsyncResult('the-copy', app=app).abort()
        copy.join(10)
    assert not copy.is_alive()
    # Stopped: its last beat is recent but nobody holds the lock.
    result = listener_state(warning=10, critical=20)
    assert result.state is State.WARNING
    assert result.message.endswith(', and no copy holds its lock')
    assert listener_state(warning=0, critical=0).state is State.CRITICAL


def test_the_loop_beats_at_most_once_per_interval(broker_app):
    lock = looper.generate_lock(looper.name)
    copy = threading.Thread(target=looper.apply, daemon=True,
                            kwargs={'task_id': 'slow-beats'})
    copy.start()
    try:
        time.sleep(0.5)
        client = looper.lock_store.redis
        first = eternal.read_heartbeat(client, lock)
        time.sleep(1.5)  # some hundred rounds of the loop
        assert eternal.read_heartbeat(client, lock) == first
        assert first['task_id'] == 'slow-beats'
        assert first['hostname'] == socket.gethostname()
        assert 0 < client.ttl(eternal.heartbeat_key(lock)) <= \
            eternal.HEARTBEAT_TTL
    finally:
        AbortableAsyncResult('slow-beats', app=app).abort()
        copy.join(10)


# --- VOEvent broker -------------------------------------------------------

@pytest.fixture
def voevent_broker(broker_app):
    """Start the VOEvent broker's loop on a free port, allowing the
    addresses given; return the port. Stopped after the test."""
    stopping = threading.Event()
    threads = []

    def start(accept):
        server = socket.create_server(('127.0.0.1', 0))
        server.settimeout(0.2)
        thread = threading.Thread(
            target=serve_queue, daemon=True,
            args=(server, stopping.is_set, accept, broker_app.conf))
        thread.start()
        threads.append(thread)
        return server.getsockname()[1]

    yield start
    stopping.set()
    for thread in threads:
        thread.join(10)


OTHER_HOST = '192.0.2.1'  # TEST-NET-1: never this machine


@pytest.mark.parametrize('served, expected, state, words', [
    (['127.0.0.1'], ['127.0.0.1'], State.OK, 'accepts connections from'),
    ([OTHER_HOST], [OTHER_HOST], State.OK, 'refuses this host'),
    ([OTHER_HOST], ['127.0.0.1'], State.CRITICAL, 'refused a connection'),
    (['127.0.0.1'], [OTHER_HOST], State.WARNING, 'not an allowed address'),
])
def test_voevent_broker_check(voevent_broker, served, expected, state,
                              words):
    port = voevent_broker(served)
    result = nagios.check_voevent_broker('127.0.0.1', port, expected, 0.5)
    assert result.state is state, result
    assert words in result.message


def test_voevent_broker_check_when_nothing_listens():
    result = nagios.check_voevent_broker('0.0.0.0', free_port(),
                                         ['127.0.0.1'], 0.5)
    assert result.state is State.CRITICAL
    assert 'does not accept connections' in result.message


# --- GraceDB --------------------------------------------------------------

class Answer(http.server.BaseHTTPRequestHandler):
    """Answer with the status in the path (``/503/``), or not at all
    (``/hang/``)."""

    def do_GET(self):
        if self.path == '/hang/':
            time.sleep(3)
            return
        self.send_response(int(self.path.strip('/')))
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Answer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_port}'
    server.shutdown()
    server.server_close()


def test_gracedb_check_of_the_local_server(gracedb_server):
    result = nagios.check_gracedb(gracedb_server.url, 1)
    assert result.state is State.OK
    assert result.perfdata[0].startswith('gracedb_time=')
    gracedb_server.stop()
    result = nagios.check_gracedb(gracedb_server.url, 1)
    assert result.state is State.CRITICAL
    assert 'not answering' in result.message


@pytest.mark.parametrize('path, state', [
    ('/503/', State.CRITICAL), ('/401/', State.WARNING),
    ('/204/', State.OK), ('/hang/', State.CRITICAL)])
def test_gracedb_check_by_answer(http_server, path, state):
    started = time.monotonic()
    result = nagios.check_gracedb(http_server + path, 1)
    assert time.monotonic() - started < 2
    assert result.state is state, result


def test_dead_letters_check_warns_while_a_recent_one_is_kept(redis_url):
    def check(now=None):
        return nagios.check_dead_letters(redis_url, 'dead', 3600, 1, now)

    ok = check()
    assert ok.state is State.OK, ok
    assert ok.perfdata == ('dead_letters=0;0;;0', 'dead_letters_kept=0;;;0')
    for offset in (1, 2):
        dead_letters.record(redis_url, 'igwn-alert', RecursionError(
            'maximum recursion depth exceeded'), b'[[[', key='dead',
            offset=offset)
    late = check()
    assert late.state is State.WARNING
    assert late.message.startswith(
        '2 message(s) dead-lettered in the last 3600 s, the newest ')
    assert (' s ago by igwn-alert: a message that raised RecursionError: '
            'maximum recursion depth exceeded') in late.message
    assert late.perfdata == ('dead_letters=2;0;;0',
                             'dead_letters_kept=2;;;0')
    # Older than the age: kept, but no longer a warning.
    later = check(now=time.time() + 7200)
    assert later.state is State.OK
    assert later.perfdata[1] == 'dead_letters_kept=2;;;0'
    # Deleting the list after inspection clears the warning.
    client = redis.Redis.from_url(redis_url)
    client.delete('dead')
    client.close()
    assert check().state is State.OK
    down = nagios.check_dead_letters(f'redis://127.0.0.1:{free_port()}/0',
                                     'dead', 3600, 1)
    assert down.state is State.UNKNOWN


# --- the command ----------------------------------------------------------

def test_an_unexpected_error_is_one_unknown_line():
    broken = SimpleNamespace(app=SimpleNamespace(conf={}))
    outcome = CliRunner().invoke(nagios.nagios, [], obj=broken)
    assert outcome.exit_code == 3
    assert outcome.output.splitlines() == [
        "NAGIOS UNKNOWN: KeyError: 'nagios_queue_length_warning'"]


def test_a_check_that_hangs_counts_as_unknown(monkeypatch):
    monkeypatch.setitem(app.conf, 'nagios_timeout', 0.2)
    monkeypatch.setitem(app.conf, 'broker_url',
                        f'redis://127.0.0.1:{free_port()}/0')
    monkeypatch.setattr(nagios, 'check_gracedb',
                        lambda *args: time.sleep(5))
    started = time.monotonic()
    results = dict(nagios.run_checks(app))
    assert time.monotonic() - started < 2
    assert results['gracedb'] == Result(
        State.UNKNOWN, 'gracedb: no result within 1.4 s')
    assert results['broker'].state is State.CRITICAL
    assert results['workers'].skipped
    assert results['dead letters'].skipped


@pytest.mark.integration
def test_workers_check(start_worker, broker_app):
    worker = start_worker('general', 'celery,openmp', '--pool', 'solo')
    result = nagios.check_workers(broker_app, ['celery', 'openmp'], 1)
    assert result.state is State.OK, result
    result = nagios.check_workers(broker_app, QUEUES, 1)
    assert result.state is State.CRITICAL
    assert result.message.startswith(
        'no worker consumes queue superevent, exttrig (workers answering: '
        'general@')
    worker.stop()
    result = nagios.check_workers(broker_app, ['celery'], 1)
    assert result.message == ('no worker consumes queue celery (workers '
                              'answering: none)')


def test_the_command_with_everything_down_is_quick(tmp_path):
    write_config(str(tmp_path), {
        'broker_url': f'redis://127.0.0.1:{free_port()}/0',
        'result_backend': f'redis://127.0.0.1:{free_port()}/0',
        'gracedb_url': f'http://127.0.0.1:{free_port()}/api/',
        'gcn_bind_port': free_port()})

    started = time.monotonic()
    run = subprocess.run([sys.executable, '-m', 'gwcelery', 'nagios'],
                         env=child_environment(str(tmp_path)),
                         capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    print(f'\ngwcelery nagios with everything down took {elapsed:.1f} s')
    assert run.returncode == 2, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('NAGIOS CRITICAL: broker redis://')
    # The listeners' locks are in another Redis (the result backend):
    # checked, not skipped.
    assert 'gcn.listen: cannot read its lock' in lines[0]
    assert '3 checks skipped' in lines[0]
    assert elapsed < 30  # about 3 s on an idle machine, import included
