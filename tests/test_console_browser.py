"""The operator console in headless Chromium against ``gwcelery local``.

An operator's session, end to end: ``gwcelery local`` (child process)
uploads a mock event; once its preliminary notice reaches a pygcn client
of the broker, the superevent is signed off OK and a parameter-estimation
sky map is uploaded to it (as a PE pipeline would), Chromium (driven over
the DevTools protocol) opens the console, makes another event of the
superevent preferred, and sends an Update with that sky map by a double
click on the button: one Update notice goes out. GraceDB and the pygcn
client show both. Screenshots in ``artifacts/screenshots/``.
"""

import asyncio
import base64
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import lxml.etree
import pytest
from gracedb_sdk import Client
from tornado.websocket import websocket_connect

from gwcelery import voevent
from gwcelery.util.redis_server import free_port

from .browser import CHROMIUM_FLAGS, SCREENSHOTS
from .test_console import small_skymap_bytes
from .test_local import ALERT_TIMEOUT, GCNClient, LocalDeployment, wait_for

pytestmark = pytest.mark.integration

#: Longest wait (s) for a page after a form is submitted: the console
#: waits for the action's outcome (console_action_timeout, 60 s).
SUBMIT_TIMEOUT = 90

#: Seconds between the two clicks of a double click: as the tester's,
#: whose two clicks sent two requests (and two notices).
DOUBLE_CLICK_GAP = 0.3


class Browser:
    """Headless Chromium with one page, driven over the DevTools
    protocol (a websocket; tornado's client)."""

    def __init__(self):
        executable = shutil.which('chromium')
        if executable is None:
            pytest.fail('chromium is not installed; run '
                        '.ci/install-system-deps')
        self.profile = tempfile.TemporaryDirectory()
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS,
             f'--user-data-dir={self.profile.name}',
             '--remote-debugging-port=0', '--window-size=1280,800',
             'about:blank'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.loop = asyncio.new_event_loop()
        self.events = []
        self.next_id = 0
        self.socket = None
        try:
            self.socket = self.loop.run_until_complete(
                self._connect(self._page_url()))
        except BaseException:
            self.close()
            raise

    def _page_url(self):
        lines = queue.Queue()

        def read():
            for line in self.process.stderr:  # also keeps the pipe empty
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        while True:
            line = lines.get(timeout=60)
            found = re.search(r'DevTools listening on ws://([\d.:]+)/', line)
            if found:
                break
        with urllib.request.urlopen(
                f'http://{found.group(1)}/json/list', timeout=10) as answer:
            targets = json.load(answer)
        return next(target['webSocketDebuggerUrl'] for target in targets
                    if target['type'] == 'page')

    @staticmethod
    async def _connect(url):
        # In the loop's coroutine, so that tornado uses that loop.
        return await websocket_connect(url, max_message_size=2 ** 26)

    async def _read(self):
        message = await self.socket.read_message()
        if message is None:
            raise RuntimeError('Chromium closed the DevTools connection')
        return json.loads(message)

    async def _call(self, method, params):
        self.next_id += 1
        call_id = self.next_id
        await self.socket.write_message(json.dumps(
            {'id': call_id, 'method': method, 'params': params}))
        while True:
            message = await self._read()
            if message.get('id') == call_id:
                if 'error' in message:
                    raise RuntimeError(f'{method}: {message["error"]}')
                return message['result']
            self.events.append(message)

    async def _wait_event(self, name):
        while not any(event.get('method') == name for event in self.events):
            self.events.append(await self._read())

    def call(self, method, timeout=30, **params):
        """Send a DevTools command; return its result."""
        return self.loop.run_until_complete(
            asyncio.wait_for(self._call(method, params), timeout))

    def _until_loaded(self, start, timeout):
        self.events.clear()
        self.call('Page.enable')
        start()
        self.loop.run_until_complete(asyncio.wait_for(
            self._wait_event('Page.loadEventFired'), timeout))

    def open(self, url):
        """Load ``url`` and wait until it is loaded."""
        self._until_loaded(lambda: self.call('Page.navigate', url=url), 60)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        result = self.call('Runtime.evaluate', expression=expression,
                           returnByValue=True)
        return result['result'].get('value')

    def click_and_wait(self, selector, timeout=SUBMIT_TIMEOUT):
        """Click the element (a form's button) and wait for the next
        page."""
        self._until_loaded(lambda: self.evaluate(
            f'document.querySelector({json.dumps(selector)}).click()'),
            timeout)

    def double_click_and_wait(self, selector, timeout=SUBMIT_TIMEOUT):
        """Double-click the element with the mouse, as an impatient
        operator does (press and release at its centre twice,
        :data:`DOUBLE_CLICK_GAP` apart, the second with ``clickCount``
        2), and wait for the next page."""
        box = self.evaluate(
            f'(() => {{ const r = document.querySelector('
            f'{json.dumps(selector)}).getBoundingClientRect(); '
            'return [r.x + r.width / 2, r.y + r.height / 2]; })()')

        def double_click():
            for count in (1, 2):
                if count == 2:
                    # The input itself, not a wait for something: clicks
                    # closer together are merged by Chromium into one
                    # submission before any request goes out.
                    time.sleep(DOUBLE_CLICK_GAP)
                for kind in ('mousePressed', 'mouseReleased'):
                    self.call('Input.dispatchMouseEvent', type=kind,
                              x=box[0], y=box[1], button='left',
                              clickCount=count)

        self._until_loaded(double_click, timeout)

    def text(self, selector):
        """The text of the first element matching ``selector``."""
        return self.evaluate(
            f'(document.querySelector({json.dumps(selector)}) || '
            '{innerText: null}).innerText')

    def screenshot(self, name):
        """Save the page as ``name`` in :data:`SCREENSHOTS`."""
        os.makedirs(SCREENSHOTS, exist_ok=True)
        data = base64.b64decode(
            self.call('Page.captureScreenshot', format='png')['data'])
        with open(os.path.join(SCREENSHOTS, name), 'wb') as f:
            f.write(data)

    def close(self):
        """Stop Chromium and remove its profile."""
        if self.socket is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.loop.close()
        self.profile.cleanup()


@pytest.fixture
def browser():
    running = Browser()
    yield running
    running.close()


@pytest.fixture
def deployment(tmp_path):
    console_port = free_port()
    running = LocalDeployment(tmp_path / 'gwcelery-local',
                              '--mock-interval', '600',
                              '--console-port', str(console_port))
    running.console = f'http://127.0.0.1:{console_port}/'
    yield running
    if running.process.poll() is None:
        running.stop()


def notice_params(payload):
    return {param.get('name'): param.get('value') for param in
            lxml.etree.fromstring(payload).iter('Param')}


def update_notices(superevent):
    """The file names of the Update notices a superevent's log says were
    sent to GCN, checked against GraceDB's VOEvent records."""
    sent = [entry['filename'] for entry in superevent.logs.get()
            if entry['comment'] == 'VOEvent sent to GCN'
            and entry['filename'].endswith('-Update.xml')]
    records = [record for record in superevent.voevents.get()
               if record['filename'].endswith('-Update.xml')]
    assert len(records) == len(sent), records
    return sent


def test_operator_changes_preferred_event_and_sends_update(
        deployment, browser, tmp_path):
    line = deployment.wait_for_line(r'Console: +http://', timeout=180)
    assert deployment.console in line
    client = GCNClient(deployment.ports['gcn'])
    client.start()
    line = deployment.wait_for_line(r'MS\d{6}[a-z]+: preliminary notice sent',
                                    timeout=ALERT_TIMEOUT)
    sid = re.search(r'MS\d{6}[a-z]+', line).group()
    gracedb = Client(deployment.gracedb_url, force_noauth=True)
    superevent = gracedb.superevents[sid]
    # A parameter-estimation sky map uploaded after the preliminary
    # notice, as a PE pipeline would (not tagged sky_loc: no automatic
    # Update); the operator sends it. Not BAYESTAR's, which on a busy
    # machine may come after the preliminary notice went out without it.
    superevent.logs.create(
        comment='Parameter estimation sky map (browser test)',
        filename='bilby.multiorder.fits',
        filecontents=small_skymap_bytes(tmp_path), tags=['pe'])
    # The rapid-response team says OK at once (before the simulated
    # decision, which might be NO and retract it).
    assert wait_for(lambda: 'ADVREQ' in superevent.get()['labels'],
                    timeout=30, interval=0.2)
    superevent.signoff('ADV', 'OK', 'console browser test')

    browser.open(deployment.console)
    assert sid in browser.text('#superevents')
    browser.screenshot('console-index.png')

    browser.open(f'{deployment.console}superevents/{sid}')
    before = superevent.get()
    new = next(graceid for graceid in before['gw_events']
               if graceid != before['preferred_event'])
    browser.evaluate(f'document.getElementById("event-{new}").click()')
    browser.screenshot('console-superevent.png')
    browser.click_and_wait('#preferred-form button')
    assert browser.text('#outcome') == 'done', browser.text('body')
    assert f'preferred event is now {new}' in browser.text('#message')
    assert 'Updated superevent parameters' in browser.text('#log-line')
    browser.screenshot('console-preferred-result.png')
    assert superevent.get()['preferred_event'] == new

    browser.open(f'{deployment.console}superevents/{sid}')
    chosen = 'bilby.multiorder.fits,0'
    options = browser.evaluate(
        'Array.from(document.querySelectorAll("select[name=skymap] '
        'option")).map(o => o.value)')
    assert chosen in options, options
    browser.evaluate('document.querySelector("select[name=skymap]").value'
                     f' = {json.dumps(chosen)}')
    # Sent with a double click: one Update notice, the one the page names.
    browser.double_click_and_wait('#update-form button')
    assert browser.text('#outcome') == 'done', browser.text('body')
    message = browser.text('#message')
    filename = re.search(rf'{sid}-\d+-Update\.xml', message).group()
    assert 'VOEvent sent to GCN' in browser.text('#log-line')
    browser.screenshot('console-update-result.png')
    # The page shown answers the last request sent, which comes once
    # every action on the superevent it waited for has its outcome in the
    # log: a second Update, had one been started, is there by now.
    assert update_notices(superevent) == [filename]

    # GraceDB: the notice with the chosen sky map, the operator's line.
    update = notice_params(superevent.files[filename].get().read())
    assert update['skymap_fits'].endswith(f'/files/{chosen}')
    comments = [entry['comment'] for entry in superevent.logs.get()]
    assert any(comment.startswith('Operator console: ') and
               f'asked for an Update notice ({chosen}' in comment
               for comment in comments)
    assert any('asked for a new preferred event' in comment
               for comment in comments)

    # The pygcn client received it.
    while True:
        payload = client.received.get(timeout=60)
        voevent.validate(payload)
        params = notice_params(payload)
        if (params['GraceID'] == sid and params['AlertType'] == 'Update'
                and params['skymap_fits'].endswith(f'/files/{chosen}')):
            break
    assert update_notices(superevent) == [filename]  # none came later

    status = subprocess.run(
        [sys.executable, '-m', 'gwcelery', 'local', '--status',
         '--data-dir', str(deployment.data_dir)],
        capture_output=True, text=True, timeout=60)
    assert re.search(rf'^console +OK +Console {deployment.console} answers',
                     status.stdout, re.M), status.stdout
    assert deployment.stop() < 60
