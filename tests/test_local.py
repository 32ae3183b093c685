"""End to end: ``gwcelery local`` from start to a preliminary alert.

Starts the whole local deployment as a user would (a child process running
``gwcelery local``), connects a real pygcn client to its VOEvent broker,
waits for the first mock event to become a superevent with a sky map,
classification, a VOEvent and GCN_PRELIM_SENT, looks at Flower and the
GraceDB pages in headless Chromium (screenshots in
``artifacts/screenshots/``), checks ``--status``, stops it with SIGINT and
starts it again on the same data directory.
"""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import gcn
import lxml.etree
import psutil
import pytest
from gracedb_sdk import Client

from gwcelery import voevent
from gwcelery.util.redis_server import free_port

from .browser import dump_dom, screenshot
from .conftest import DATA_DIR

pytestmark = pytest.mark.integration

#: Longest wait (s) for the first preliminary alert: a limit, not a
#: measure (``bench/alert_latency.py`` measures). A first alert takes about
#: two minutes on a quiet 2-core machine (three BAYESTAR runs, in one
#: process in eager mode); at a load of 10 it took over four.
ALERT_TIMEOUT = 600


class LocalDeployment:
    """``gwcelery local`` as a child process, its output in a queue."""

    def __init__(self, data_dir, *args):
        self.data_dir = data_dir
        self.ports = {name: free_port() for name in
                      ('gracedb', 'flower', 'gcn')}
        argv = [sys.executable, '-m', 'gwcelery', 'local',
                '--data-dir', str(data_dir),
                '--gracedb-port', str(self.ports['gracedb']),
                '--flower-port', str(self.ports['flower']),
                '--gcn-port', str(self.ports['gcn']), *args]
        env = {k: v for k, v in os.environ.items()
               if k not in ('CELERY_CONFIG_MODULE', 'CELERY_BROKER_URL',
                            'CELERY_RESULT_BACKEND')}
        # Started from the data directory's parent, as a user would start
        # it in the folder where it keeps ./gwcelery-local.
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, cwd=os.path.dirname(data_dir))
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip('\n'))

    def wait_for_line(self, pattern, timeout):
        """Return the first output line matching `pattern`."""
        for line in self.lines:
            if re.search(pattern, line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        pytest.fail(f'no line matching {pattern!r} within {timeout} s; '
                    'output:\n' + '\n'.join(self.lines))

    @property
    def gracedb_url(self):
        return f'http://127.0.0.1:{self.ports["gracedb"]}/api/'

    def stop(self, timeout=60):
        """SIGINT, as Ctrl-C; return the seconds it took to exit."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout)
        return time.monotonic() - start


class GCNClient(threading.Thread):
    """A real pygcn client of the broker, collecting what it receives."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.received = queue.Queue()

    def run(self):
        gcn.listen(host='127.0.0.1', port=self.port,
                   handler=lambda payload, root: self.received.put(payload))


def wait_for(predicate, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture
def deployment(tmp_path):
    running = LocalDeployment(tmp_path / 'gwcelery-local',
                              '--mock-interval', '600')
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_first_mock_event_becomes_a_preliminary_alert(deployment, tmp_path):
    deployment.wait_for_line(r'gwcelery local is up', timeout=180)
    client = GCNClient(deployment.ports['gcn'])
    client.start()

    line = deployment.wait_for_line(r'superevent MS\d{6}[a-z]+ created',
                                    timeout=ALERT_TIMEOUT)
    superevent_id = re.search(r'MS\d{6}[a-z]+', line).group()
    deployment.wait_for_line(
        rf'{superevent_id}: preliminary notice sent', timeout=ALERT_TIMEOUT)

    gracedb = Client(deployment.gracedb_url, force_noauth=True)
    superevent = gracedb.superevents[superevent_id].get()
    assert 'GCN_PRELIM_SENT' in superevent['labels']
    # The plots are made in parallel with the notice: give them time.
    wanted = ('bayestar.multiorder.fits', 'bayestar.png', 'em_bright.json',
              'p_astro.json')

    def missing_files():
        files = gracedb.superevents[superevent_id].files.get()
        return [name for name in wanted
                if not any(key.endswith(name) for key in files)]

    assert wait_for(lambda: not missing_files(), timeout=120), \
        missing_files()
    voevents = gracedb.superevents[superevent_id].voevents.get()
    assert voevents

    payload = client.received.get(timeout=60)
    voevent.validate(payload)
    assert superevent_id.encode() in payload

    # What a person sees: Flower lists the workers; the superevent page
    # shows the sky map.
    flower = f'http://127.0.0.1:{deployment.ports["flower"]}/workers'
    dom = wait_for(lambda: (lambda d: d if 'superevent@' in d else None)(
        dump_dom(flower)), timeout=30)
    for worker in ('celery@', 'openmp@', 'superevent@', 'exttrig@'):
        assert worker in dom
    screenshot(flower, 'local-flower.png')
    page = deployment.gracedb_url.replace(
        '/api/', f'/superevents/{superevent_id}/view/')
    dom = dump_dom(page)
    images = re.findall(r'<img [^>]*>', dom)
    skymaps = [image for image in images if 'bayestar.png' in image]
    assert skymaps, images
    width = re.search(r'data-natural-width="(\d+)"', skymaps[0])
    assert width and int(width.group(1)) > 0, skymaps[0]
    screenshot(page, 'local-superevent.png')

    status = subprocess.run(
        [sys.executable, '-m', 'gwcelery', 'local', '--status',
         '--data-dir', str(deployment.data_dir)],
        capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert 'DOWN' not in status.stdout

    children = psutil.Process(deployment.process.pid).children(
        recursive=True)
    assert len(children) >= 8  # redis, gracedb, 4 workers, beat, flower
    assert deployment.stop() < 45
    assert deployment.process.returncode == 0
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []

    # State survives: a new start on the same data directory still has it.
    again = LocalDeployment(deployment.data_dir, '--no-mock')
    try:
        again.wait_for_line(r'gwcelery local is up', timeout=180)
        gracedb = Client(again.gracedb_url, force_noauth=True)
        # Labels applied after the snapshot (EM_READY may follow a
        # preliminary sent on its time-out) are there too; the simulated
        # sign-off (mock_signoff_delay) may have answered ADVREQ meanwhile.
        labels = set(gracedb.superevents[superevent_id].get()['labels'])
        if 'ADVREQ' not in labels:
            assert labels & {'ADVOK', 'ADVNO'}, labels
        assert set(superevent['labels']) - {'ADVREQ'} <= labels
        check_celery_commands_reach(again)
    finally:
        again.stop()


def celery_command(cwd, *args, **env):
    """Run ``gwcelery ARGS`` in `cwd` as a user's shell would, with no
    configuration in the environment but `env`."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ('CELERY_CONFIG_MODULE', 'CELERY_BROKER_URL',
                            'CELERY_RESULT_BACKEND', 'GWCELERY_LOCAL_DIR')}
    return subprocess.run([sys.executable, '-m', 'gwcelery', *args],
                          cwd=cwd, env={**environ, **env},
                          capture_output=True, text=True, timeout=120)


def check_celery_commands_reach(deployment):
    """Celery's own commands, run in a second terminal, reach the running
    deployment: from its folder with nothing set, or from anywhere with
    ``GWCELERY_LOCAL_DIR``. ``gwcelery call gwcelery.tasks.gcn.send``
    delivers a VOEvent to a GCN client of the broker."""
    folder = os.path.dirname(deployment.data_dir)
    for cwd, env in ((folder, {}), ('/', {'GWCELERY_LOCAL_DIR':
                                          str(deployment.data_dir)})):
        out = celery_command(cwd, 'inspect', 'ping', '--timeout', '5', **env)
        assert out.returncode == 0, out.stdout + out.stderr
        for worker in ('celery@', 'openmp@', 'superevent@', 'exttrig@'):
            assert worker in out.stdout

    client = GCNClient(deployment.ports['gcn'])
    client.start()
    assert wait_for(lambda: connected_to(deployment.ports['gcn']),
                    timeout=30, interval=0.2)
    with open(os.path.join(DATA_DIR, 'gcn', 'snews_gcn_test.xml')) as f:
        voevent_text = f.read()
    out = celery_command(folder, 'call', 'gwcelery.tasks.gcn.send',
                         '--args', json.dumps([voevent_text]))
    assert out.returncode == 0, out.stdout + out.stderr
    deadline = time.monotonic() + 60
    while client.received.get(timeout=max(0, deadline - time.monotonic())) \
            != voevent_text.encode():
        pass


def connected_to(port):
    """Whether a TCP connection to `port` of this machine is established."""
    return any(connection.raddr and connection.raddr.port == port and
               connection.status == psutil.CONN_ESTABLISHED
               for connection in psutil.net_connections('tcp'))


def test_eager_mode_runs_the_pipeline_in_one_process(tmp_path):
    """``--eager``: no broker, no workers; the alert still goes out."""
    eager = LocalDeployment(tmp_path / 'eager', '--eager',
                            '--mock-interval', '600')
    try:
        eager.wait_for_line(r'gwcelery local is up \(eager', timeout=120)
        children = psutil.Process(eager.process.pid).children(recursive=True)
        assert [child.name() for child in children] == ['redis-server']
        client = GCNClient(eager.ports['gcn'])
        client.start()
        line = eager.wait_for_line(r'MS\d{6}[a-z]+: preliminary notice sent',
                                   timeout=ALERT_TIMEOUT)
        superevent_id = re.search(r'MS\d{6}[a-z]+', line).group()
        payload = client.received.get(timeout=60)
        voevent.validate(payload)
        assert superevent_id.encode() in payload
    finally:
        assert eager.stop() < 60


def notice_params(payload):
    """The Params of a notice, by name."""
    return {param.get('name'): param.get('value') for param in
            lxml.etree.fromstring(payload).iter('Param')}


def test_signoffs_become_initial_and_retraction(tmp_path):
    """As the rapid-response team: sign off OK the first mock superevent
    whose preliminary notice reaches a pygcn client of the broker, NO the
    second (before the simulated decision, 60 s later); the client then
    receives an Initial for the first (once it has a sky map) and a
    Retraction for the second, each once, and the milestones say so.
    Mock events every two minutes, so that BAYESTAR keeps up on two
    cores."""
    running = LocalDeployment(tmp_path / 'gwcelery-local',
                              '--mock-interval', '120')
    try:
        running.wait_for_line(r'gwcelery local is up', timeout=180)
        client = GCNClient(running.ports['gcn'])
        client.start()
        gracedb = Client(running.gracedb_url, force_noauth=True)
        decisions = {}
        received = {}
        deadline = time.monotonic() + 3 * ALERT_TIMEOUT
        while not (len(decisions) == 2 and all(
                {'Initial', 'Retraction'} & set(received[sid])
                for sid in decisions)):
            payload = client.received.get(
                timeout=max(1, deadline - time.monotonic()))
            voevent.validate(payload)
            params = notice_params(payload)
            superevent_id = params['GraceID']
            received.setdefault(superevent_id, []).append(
                params['AlertType'])
            if (params['AlertType'] == 'Preliminary'
                    and superevent_id not in decisions
                    and len(decisions) < 2):
                status = 'NO' if decisions else 'OK'
                decisions[superevent_id] = status
                superevent = gracedb.superevents[superevent_id]
                assert wait_for(
                    lambda s=superevent: 'ADVREQ' in s.get()['labels'],
                    timeout=30, interval=0.2)
                superevent.signoff('ADV', status, 'end-to-end test')

        (ok, _), (no, _) = decisions.items()
        assert received[ok][0] == 'Preliminary'
        assert received[no][0] == 'Preliminary'
        running.wait_for_line(rf'{ok}: Initial sent', timeout=30)
        running.wait_for_line(rf'{no}: Retraction sent', timeout=30)
        # Nothing more for them: no second Initial, nothing after the
        # Retraction (the simulated decision comes later and is refused).
        time.sleep(5)
        while not client.received.empty():
            params = notice_params(client.received.get())
            received.setdefault(params['GraceID'], []).append(
                params['AlertType'])
        assert received[ok].count('Initial') == 1
        assert received[no][-1] == 'Retraction'
        assert received[no].count('Retraction') == 1
    finally:
        assert running.stop() < 60
