"""Fault bench of the operator console: a form sent twice must send one
notice.

Starts a Redis, ``gwcelery gracedb-server`` (no alert transport: nothing
but the console acts on the superevents), one ``gwcelery worker`` on the
``celery`` queue and ``gwcelery console``, each a subprocess. For each of
``--superevents`` MDC superevents (a candidate with a sky map, source
properties and classification; its preliminary notice sent through the
console first, since an Update needs a public notice), one trial of each
scenario, on the Update form of the superevent's page:

* ``double-click``: the button double-clicked with the mouse in headless
  Chromium (two clicks 0.3 s apart; ``tests/test_console_browser.py``'s
  driver), one intent;
* ``same-key``: the same form POSTed twice at once (two threads released
  by a barrier, the same session and action key), one intent;
* ``two-keys``: two renderings of the form (two keys) POSTed at once, two
  intents.

The notices are those that reached the VOEvent broker's queue (what goes
to GCN), checked against GraceDB's VOEvent list, counted once every
claimed action key of the form has its outcome and the superevent's
console lock is free. Columns (:mod:`bench.table`): intents sent, notices
handled, intents lost (without a notice), notices duplicated (beyond the
intents), the longest time from the first click or POST to the last
intended notice's queueing; the note says whether every result page
named the notice that was sent, how many requests went out, how many
pages said "already submitted" and how many actions started.

    python bench/faults_console.py [--superevents 3]
"""

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

import redis  # noqa: E402
import requests  # noqa: E402

from bench.stack import Stack, stop_processes  # noqa: E402
from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402
from gwcelery.tasks import gracedb  # noqa: E402
from gwcelery.tools.local import child_environment, write_config  # noqa
from gwcelery.util.redis_server import RedisServer, free_port  # noqa: E402

#: The scenarios, in the order of the table, and their intents.
INTENTS = {'double-click': 1, 'same-key': 1, 'two-keys': 2}

#: Longest wait (s) for a page, a notice or the console to settle.
PATIENCE = 120


class ConsoleStack:
    """Redis, the GraceDB server, a worker and the console, in
    ``workdir`` (logs ``{name}.log``); stopped by :meth:`stop`."""

    def __init__(self, workdir, action_timeout):
        self.workdir = workdir
        self.processes = {}
        self.redis = RedisServer(data_dir=os.path.join(workdir, 'redis'))
        self.redis.start()
        try:
            self._start_children(action_timeout)
        except BaseException:
            self.stop()
            raise

    def _start_children(self, action_timeout):
        gracedb_port, console_port = free_port(), free_port()
        url = self.redis.url
        settings = {
            'broker_url': url, 'result_backend': url,
            'gracedb_url': f'http://127.0.0.1:{gracedb_port}/api/',
            'gracedb_host': f'127.0.0.1:{gracedb_port}',
            'console_action_timeout': float(action_timeout),
            'volume_plot_resolution': 16, 'volume_plot_dpi': 30,
            'skymap_plot_dpi': 30}
        write_config(self.workdir, settings)
        app.conf.update(settings)
        os.environ['CELERY_BROKER_URL'] = url
        os.environ['CELERY_RESULT_BACKEND'] = url
        env = child_environment(self.workdir)
        self._start(env, 'gracedb-server', '--host', '127.0.0.1', '--port',
                    str(gracedb_port), '--data-dir',
                    os.path.join(self.workdir, 'gracedb'), '--alerts',
                    'none', '--log-level', 'WARNING')
        self._start(env, 'worker', '--hostname', 'console-bench@%h',
                    '--queues', 'celery', '--concurrency', '2',
                    '--loglevel', 'INFO', '--without-mingle',
                    '--without-gossip')
        self._start(env, 'console', '--port', str(console_port))
        self.console = f'http://127.0.0.1:{console_port}/'
        self._wait_for_port('gracedb-server', gracedb_port)
        self._wait_for_port('console', console_port)
        Stack.wait_for_workers({'console-bench'}, timeout=PATIENCE)

    def _start(self, env, name, *args):
        """Start ``gwcelery name args...``, logging to ``name.log``."""
        with open(os.path.join(self.workdir, f'{name}.log'), 'wb') as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, '-m', 'gwcelery', name, *args], env=env,
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def _wait_for_port(self, name, port):
        """Wait until the child ``name`` listens on ``port``."""
        def listening():
            if self.processes[name].poll() is not None:
                with open(os.path.join(self.workdir, f'{name}.log')) as f:
                    raise RuntimeError(f'{name} exited: {f.read()[-2000:]}')
            try:
                socket.create_connection(('127.0.0.1', port), 1).close()
            except OSError:
                return False
            return True
        poll(listening, f'{name} listening on port {port}')

    def stop(self):
        """Stop every child, then Redis."""
        stop_processes(self.processes.values())
        self.redis.stop()


def poll(condition, what, timeout=PATIENCE, interval=0.2):
    """The first true value of ``condition()``, polled until ``timeout``
    (then :exc:`TimeoutError` naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what} within {timeout:g} s')
        time.sleep(interval)


def form_fields(page, form_id):
    """The hidden fields (form token, action key) of a form of a page."""
    form = re.search(rf'<form[^>]*id="{form_id}">(.*?)</form>', page, re.S)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" '
                           r'value="([^"]*)"', form.group(1)))


def result_page(sid, text):
    """What a result page says: ``(outcome, notice named, replayed)``."""
    outcome = re.search(r'id="outcome"[^>]*>([^<]*)<', text)
    named = re.search(rf'{sid}-\d+-Update\.xml', text)
    return (outcome.group(1) if outcome else None,
            named.group() if named else None, 'id="replayed"' in text)


def new_superevent(stack, skymap):
    """An MDC superevent of one complete candidate, after its preliminary
    notice sent through the console."""
    from tests.fixtures.orchestrator import read_gracedb_data
    from tests.test_console import upload_candidate
    from tests.test_orchestrator import new_superevent as create

    event = upload_candidate(read_gracedb_data('coinc.xml'), skymap,
                             'gstlal')
    sid = create(event)
    session = requests.Session()
    page = session.get(f'{stack.console}superevents/{sid}', timeout=60)
    done = session.post(f'{stack.console}superevents/{sid}/preliminary',
                        data=form_fields(page.text, 'preliminary-form'),
                        timeout=PATIENCE)
    if done.status_code != 200:
        raise RuntimeError(f'{sid}: preliminary notice: {done.status_code}')
    return sid


def update_notices(stack, sid):
    """``{file name: seconds since the epoch}`` of the superevent's Update
    notices in the VOEvent broker's queue, and whether GraceDB's VOEvent
    list has the same ones."""
    client = redis.Redis.from_url(stack.redis.url)
    try:
        entries = client.xrange(app.conf['gcn_broker_queue_key'])
    finally:
        client.close()
    queued = {}
    for entry_id, fields in entries:
        found = re.search(rf'{sid}-\d+-Update'.encode(), fields[b'voevent'])
        if found:
            name = found.group().decode() + '.xml'
            queued.setdefault(name, []).append(
                int(entry_id.split(b'-')[0]) / 1000)
    in_gracedb = sorted(record['filename'] for record in
                        gracedb.get_voevents(sid)
                        if record['filename'].endswith('-Update.xml'))
    return queued, in_gracedb == sorted(queued)


def settled(stack, sid):
    """Whether every action key claimed for the superevent's Update form
    has its outcome and no console action holds the superevent."""
    client = redis.Redis.from_url(stack.redis.url)
    try:
        if client.exists(f'gwcelery:console:busy:{sid}'):
            return False
        path = f'/superevents/{sid}/update'
        for name in client.scan_iter('gwcelery:console:action:*'):
            record = json.loads(client.get(name) or 'null')
            if record and record['path'] == path and \
                    record['result'] is None:
                return False
        return True
    finally:
        client.close()


def started_actions(sid):
    """How many Update actions the console started on the superevent
    (the operator's lines in its log)."""
    return sum('asked for an Update notice' in entry['comment']
               for entry in gracedb.get_log(sid))


def post_at_once(url, forms, cookies):
    """POST the forms from threads released together by a barrier;
    return the texts of the answers, in order."""
    barrier = threading.Barrier(len(forms))
    texts = [None] * len(forms)

    def submit(index):
        barrier.wait(timeout=30)
        texts[index] = requests.post(url, data=forms[index],
                                     cookies=cookies, timeout=PATIENCE).text

    threads = [threading.Thread(target=submit, args=(index,))
               for index in range(len(forms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return texts


def posted(stack, sid, keys):
    """The ``same-key`` (``keys`` 1) or ``two-keys`` (2) scenario: the
    Update form POSTed twice at once. Returns ``(first POST time, result
    pages' texts, requests sent)``."""
    session = requests.Session()
    page = f'{stack.console}superevents/{sid}'
    forms = [form_fields(session.get(page, timeout=60).text, 'update-form')
             for _ in range(keys)]
    forms = [{**form, 'skymap': '', 'em_bright': '', 'p_astro': ''}
             for form in forms]
    if keys == 1:
        forms *= 2
    start = time.time()
    texts = post_at_once(f'{page}/update', forms,
                         session.cookies.get_dict())
    return start, texts, len(forms)


def double_clicked(stack, browser, sid):
    """The ``double-click`` scenario: the Update button double-clicked in
    Chromium. Returns ``(first click time, [the page shown], POST
    requests that Chromium sent)``."""
    browser.call('Network.enable')
    browser.open(f'{stack.console}superevents/{sid}')
    start = time.time()
    browser.double_click_and_wait('#update-form button', timeout=PATIENCE)
    html = browser.evaluate('document.documentElement.outerHTML')
    sent = sum(event.get('method') == 'Network.requestWillBeSent' and
               event['params']['request']['method'] == 'POST'
               for event in browser.events)
    return start, [html], sent


def trial(stack, sid, scenario, browser):
    """One trial; returns ``(handled, lost, duplicated, recovery, pages
    right, requests, replayed pages, actions started, GraceDB agrees)``."""
    before, _ = update_notices(stack, sid)
    actions_before = started_actions(sid)
    if scenario == 'double-click':
        start, texts, requests_sent = double_clicked(stack, browser, sid)
    else:
        start, texts, requests_sent = posted(
            stack, sid, INTENTS[scenario])
    poll(lambda: settled(stack, sid), f'{sid}: the console settled')
    intents = INTENTS[scenario]
    # Notices come before the outcome that names them; wait for the
    # intended ones, in case an outcome was "timed out".
    try:
        poll(lambda: len(set(update_notices(stack, sid)[0]) - set(before))
             >= intents, f'{sid}: {intents} notices', timeout=30)
    except TimeoutError:
        pass
    queued, agrees = update_notices(stack, sid)
    new = {name: times for name, times in queued.items()
           if name not in before}
    count = sum(len(times) for times in new.values())
    pages = [result_page(sid, text) for text in texts]
    named = {name for _, name, _ in pages}
    right = (all(outcome == 'done' for outcome, _, _ in pages)
             and named == set(new) and len(named) == intents)
    times = sorted(t for times in new.values() for t in times)
    recovery = (times[intents - 1] - start if len(times) >= intents
                else math.nan)
    return (count, max(0, intents - count), max(0, count - intents),
            recovery, right, requests_sent,
            sum(replayed for _, _, replayed in pages),
            started_actions(sid) - actions_before, agrees)


def row(scenario, results):
    """The table's row of a scenario's trials."""
    trials = len(results)
    recoveries = [r[3] for r in results if not math.isnan(r[3])]
    note = (f'pages named the sent notice: '
            f'{sum(r[4] for r in results)}/{trials}; requests '
            f'{"+".join(str(r[5]) for r in results)}; "already submitted" '
            f'pages {sum(r[6] for r in results)}; actions started '
            f'{"+".join(str(r[7]) for r in results)}')
    if not all(r[8] for r in results):
        note += '; GraceDB VOEvent list and GCN queue DISAGREE'
    return (scenario, trials, trials * INTENTS[scenario],
            sum(r[0] for r in results), sum(r[1] for r in results),
            sum(r[2] for r in results),
            max(recoveries) if recoveries else math.nan, note)


def start_browser():
    """Headless Chromium (``tests/test_console_browser.py``'s driver),
    or ``None`` if it is not installed."""
    if shutil.which('chromium') is None:
        return None
    from tests.test_console_browser import Browser
    return Browser()


def add_arguments(parser):
    """The bench's options."""
    parser.add_argument('--superevents', type=int, default=3,
                        help='superevents, one trial of each scenario on '
                             'each')
    parser.add_argument('--action-timeout', type=float, default=60,
                        help="the console's console_action_timeout (s)")


def run(args):
    """Run the scenarios; return the table's rows."""
    from tests.test_console import small_skymap_bytes

    results = {scenario: [] for scenario in INTENTS}
    with tempfile.TemporaryDirectory(prefix='gwcelery-console-') as workdir:
        skymap = small_skymap_bytes(Path(workdir))
        stack = browser = None
        try:
            stack = ConsoleStack(workdir, args.action_timeout)
            browser = start_browser()
            for _ in range(args.superevents):
                sid = new_superevent(stack, skymap)
                for scenario in INTENTS:
                    if scenario == 'double-click' and browser is None:
                        continue
                    results[scenario].append(
                        trial(stack, sid, scenario, browser))
        finally:
            if browser is not None:
                browser.close()
            if stack is not None:
                stack.stop()
    rows = []
    for scenario, done in results.items():
        if scenario == 'double-click' and not done:
            rows.append((scenario, 0, 0, 0, 0, 0, math.nan,
                         'not run: chromium not installed'))
        else:
            rows.append(row(scenario, done))
    return rows


def main():
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
