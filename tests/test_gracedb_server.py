"""The local GraceDB server through the real clients over real HTTP.

The same scenario runs through gracedb-sdk and through ligo-gracedb (with
the default, v1 and v2 API roots); a Redis pub/sub subscriber checks the
alerts and their order; a restart on the same data directory keeps
everything.
"""

import concurrent.futures
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis
from gracedb_sdk import Client
from ligo.gracedb.rest import GraceDb

from gwcelery.gracedb_server import GraceDbServer
from gwcelery.gracedb_server.alerts import RedisTransport
from gwcelery.util.alert_stream import next_published

from .conftest import DATA_DIR

COINC = os.path.join(DATA_DIR, 'gracedb', 'coinc.xml')
PSD = os.path.join(DATA_DIR, 'gracedb', 'psd.xml.gz')
PNG = (b'\x89PNG\r\n\x1a\n' + os.urandom(64))  # bytes that must round-trip


def read(path):
    with open(path, 'rb') as f:
        return f.read()


class AlertSubscriber:
    """Collect the alerts published on Redis channels ``lvalert:*``."""

    def __init__(self, url):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe('lvalert:*')
        self.pubsub.get_message(timeout=5)  # the subscription confirmation
        self.alerts = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            message = next_published(self.pubsub, 0.2)
            if message and message['type'] == 'pmessage':
                alert = json.loads(message['data'])
                node = message['channel'].decode().removeprefix('lvalert:')
                self.alerts.append((node, alert))

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.alerts) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.alerts

    def close(self):
        self.running = False
        self.thread.join()
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def server(tmp_path, redis_url):
    """A server publishing alerts to the test Redis."""
    server = GraceDbServer(str(tmp_path / 'gracedb'), port=0,
                           transports=[RedisTransport(redis_url)]).start()
    yield server
    server.stop()


@pytest.fixture
def subscriber(redis_url):
    subscriber = AlertSubscriber(redis_url)
    yield subscriber
    subscriber.close()


class SdkClient:
    """The scenario's operations through gracedb-sdk."""

    def __init__(self, url):
        self.client = Client(url, force_noauth=True)

    def create_event(self, filename, contents, labels=()):
        return self.client.events.create(
            filename=filename, filecontents=contents, group='CBC',
            pipeline='gstlal', search='AllSky', labels=list(labels))

    def upload(self, object_id, message, filename, contents, tags):
        return self.client.events[object_id].logs.create(
            comment=message, filename=filename, filecontents=contents,
            tags=tags)

    def create_superevent(self, event):
        return self.client.superevents.create(
            t_start=event['gpstime'] - 1, t_0=event['gpstime'],
            t_end=event['gpstime'] + 1, preferred_event=event['graceid'])

    def add_event(self, superevent_id, graceid):
        self.client.superevents[superevent_id].add(graceid)

    def set_preferred(self, superevent_id, graceid):
        self.client.superevents.update(superevent_id,
                                       preferred_event=graceid)

    def add_label(self, object_id, label):
        self.client.superevents[object_id].labels.create(label)

    def download(self, object_id, filename):
        return self.client.superevents[object_id].files[filename].get().read()

    def create_voevent(self, object_id):
        return self.client.superevents[object_id].voevents.create(
            voevent_type='preliminary', internal=False, open_alert=True)

    def confirm(self, superevent_id):
        url = f'{self.client.url}superevents/{superevent_id}/confirm-as-gw/'
        return self.client.session.post(url).json()

    def superevent(self, superevent_id):
        # gracedb-sdk takes ids without an "S" (GW ids too) for events.
        url = f'{self.client.url}superevents/{superevent_id}/'
        return self.client.session.get(url).json()

    def event(self, graceid):
        return self.client.events[graceid].get()

    def log(self, object_id):
        return self.client.events[object_id].logs.get()


class LigoClient:
    """The scenario's operations through ligo-gracedb."""

    def __init__(self, url, api_version):
        self.client = GraceDb(url, api_version=api_version,
                              force_noauth=True)

    def create_event(self, filename, contents, labels=()):
        return self.client.create_event(
            'CBC', 'gstlal', filename, search='AllSky', filecontents=contents,
            labels=list(labels) or None).json()

    def upload(self, object_id, message, filename, contents, tags):
        return self.client.write_log(
            object_id, message, filename=filename, filecontents=contents,
            tag_name=tags).json()

    def create_superevent(self, event):
        return self.client.create_superevent(
            event['gpstime'] - 1, event['gpstime'], event['gpstime'] + 1,
            event['graceid'], category='production').json()

    def add_event(self, superevent_id, graceid):
        self.client.add_event_to_superevent(superevent_id, graceid)

    def set_preferred(self, superevent_id, graceid):
        self.client.update_superevent(superevent_id, preferred_event=graceid)

    def add_label(self, object_id, label):
        self.client.write_label(object_id, label)

    def download(self, object_id, filename):
        return self.client.files(object_id, filename).read()

    def create_voevent(self, object_id):
        return self.client.create_voevent(
            object_id, 'preliminary', internal=False, open_alert=True).json()

    def confirm(self, superevent_id):
        return self.client.confirm_superevent_as_gw(superevent_id).json()

    def superevent(self, superevent_id):
        return self.client.superevent(superevent_id).json()

    def event(self, graceid):
        return self.client.event(graceid).json()

    def log(self, object_id):
        return self.client.logs(object_id).json()['log']


CLIENTS = {
    'gracedb-sdk': lambda url: SdkClient(url),
    'ligo-gracedb': lambda url: LigoClient(url, None),
    'ligo-gracedb-v1': lambda url: LigoClient(url, 'v1'),
    'ligo-gracedb-v2': lambda url: LigoClient(url, 'v2'),
}

#: The alerts the scenario causes, in order: (node, uid, alert_type), with
#: E1/E2 the events and S the superevent. Event alerts go to both nodes.
EXPECTED_ALERTS = [
    ('E1', 'new'), ('E1', 'log'), ('E2', 'new'), ('E2', 'label_added'),
    ('S', 'new'), ('E1', 'added_to_superevent'),
    ('E1', 'selected_as_preferred'),
    ('S', 'event_added'), ('E2', 'added_to_superevent'),
    ('S', 'update'), ('E1', 'removed_as_preferred'),
    ('E2', 'selected_as_preferred'),
    ('S', 'label_added'), ('S', 'log'), ('S', 'voevent'),
    ('S', 'confirmed_as_gw'),
]


def expected_alerts(ids):
    alerts = []
    for key, alert_type in EXPECTED_ALERTS:
        if key == 'S':
            alerts.append(('superevent', ids['S'], alert_type))
        else:
            for node in ('cbc_gstlal', 'cbc_gstlal_allsky'):
                alerts.append((node, ids[key], alert_type))
    return alerts


@pytest.mark.parametrize('client_name', list(CLIENTS))
def test_scenario(server, subscriber, client_name):
    client = CLIENTS[client_name](server.url)
    coinc = read(COINC)
    psd = read(PSD)

    # A CBC event from coinc.xml: fields read from the LIGO-LW tables.
    event1 = client.create_event('coinc.xml', coinc)
    assert event1['graceid'] == 'G0001'
    assert event1['group'] == 'CBC'
    assert event1['pipeline'] == 'gstlal'
    assert event1['search'] == 'AllSky'
    assert event1['gpstime'] == pytest.approx(1186436412.173835, abs=1e-6)
    assert event1['far'] == pytest.approx(5.176954877338635e-16)
    assert event1['instruments'] == 'H1,L1,V1'
    assert event1['nevents'] == 3
    assert event1['extra_attributes']['CoincInspiral']['snr'] == \
        pytest.approx(15.61787480055296)
    assert [single['ifo'] for single in
            event1['extra_attributes']['SingleInspiral']] == \
        ['H1', 'L1', 'V1']
    assert event1['links']['self'] == server.url + 'events/G0001'

    log = client.upload('G0001', 'PSDs', 'psd.xml.gz', psd, ['psd'])
    assert (log['filename'], log['file_version']) == ('psd.xml.gz', 0)

    event2 = client.create_event('coinc.xml', coinc, labels=['INJ'])
    assert event2['graceid'] == 'G0002'
    assert event2['labels'] == ['INJ']

    # A superevent: id from the UTC date of t_0 (2017-08-10).
    superevent = client.create_superevent(event1)
    sid = superevent['superevent_id']
    assert sid == 'S170810a'
    assert superevent['preferred_event'] == 'G0001'
    assert superevent['category'] == 'Production'
    assert superevent['gw_events'] == ['G0001']
    assert superevent['links']['self'] == server.url + f'superevents/{sid}/'

    client.add_event(sid, 'G0002')
    client.set_preferred(sid, 'G0002')
    client.add_label(sid, 'EM_READY')
    log = client.upload(sid, 'A sky map', 'bayestar.png', PNG, ['sky_loc'])
    assert log['filename'] == 'bayestar.png'
    assert client.download(sid, 'bayestar.png') == PNG
    assert client.download(sid, f"bayestar.png,{log['file_version']}") == PNG
    assert client.download('G0001', 'psd.xml.gz') == psd
    assert gzip.decompress(client.download('G0001', 'psd.xml.gz'))

    voevent = client.create_voevent(sid)
    assert voevent['filename'] == f'{sid}-1-Preliminary.xml'
    assert voevent['voevent_type'] == 'PR'
    xml = client.download(sid, voevent['filename'])
    assert b'<Param name="GraceID" dataType="string" value="S170810a"' in xml
    assert b'value="Preliminary"' in xml

    confirmed = client.confirm(sid)
    assert confirmed['gw_id'] == 'GW170810A'
    assert confirmed['superevent_id'] == sid

    superevent = client.superevent('GW170810A')
    assert superevent['superevent_id'] == sid
    assert superevent['preferred_event'] == 'G0002'
    assert superevent['gw_events'] == ['G0002', 'G0001']
    assert superevent['labels'] == ['EM_READY']
    assert client.event('G0001')['superevent'] == sid
    assert [entry['filename'] for entry in client.log(sid)
            if entry['filename']] == ['bayestar.png', voevent['filename']]

    ids = {'E1': 'G0001', 'E2': 'G0002', 'S': sid}
    expected = expected_alerts(ids)
    alerts = subscriber.wait_for(len(expected))
    assert [(node, alert['uid'], alert['alert_type'])
            for node, alert in alerts] == expected
    for _, alert in alerts:
        assert alert['object']['links']['self'].startswith(server.url)
    by_type = {(alert['uid'], alert['alert_type']): alert
               for node, alert in alerts}
    new_event = by_type[('G0001', 'new')]
    assert new_event['data']['graceid'] == 'G0001'
    assert new_event['object']['superevent_neighbours'] == {}
    psd_log = by_type[('G0001', 'log')]['data']
    assert (psd_log['filename'], psd_log['file_version'],
            psd_log['tag_names']) == ('psd.xml.gz', 0, ['psd'])
    assert by_type[('G0002', 'label_added')]['data']['name'] == 'INJ'
    preferred = by_type[('G0001', 'selected_as_preferred')]['object']
    assert preferred['superevent'] == sid
    assert sid in preferred['superevent_neighbours']
    assert by_type[(sid, 'label_added')]['data']['name'] == 'EM_READY'
    assert by_type[(sid, 'voevent')]['data']['filename'] == \
        voevent['filename']
    assert by_type[(sid, 'confirmed_as_gw')]['object']['gw_id'] == \
        'GW170810A'


def test_restart_keeps_everything(tmp_path):
    data_dir = str(tmp_path / 'gracedb')
    psd = read(PSD)
    with GraceDbServer(data_dir, port=0) as server:
        client = Client(server.url, force_noauth=True)
        event = client.events.create(
            filename='coinc.xml', filecontents=read(COINC), group='CBC',
            pipeline='gstlal', search='AllSky')
        client.events[event['graceid']].logs.create(
            comment='PSD', filename='psd.xml.gz', filecontents=psd)
        superevent = client.superevents.create(
            t_start=1, t_0=event['gpstime'], t_end=event['gpstime'] + 1,
            preferred_event=event['graceid'])
        sid = superevent['superevent_id']
        client.superevents[sid].labels.create('DQOK')
        before = client.superevents[sid].get()
        log_before = client.superevents[sid].logs.get()

    with GraceDbServer(data_dir, port=0) as server:
        client = Client(server.url, force_noauth=True)
        after = client.superevents[sid].get()
        for key in ('superevent_id', 'preferred_event', 't_0', 'labels',
                    'gw_events', 'created'):
            assert after[key] == before[key]
        assert [entry['comment'] for entry in
                client.superevents[sid].logs.get()] == \
            [entry['comment'] for entry in log_before]
        assert client.events[event['graceid']].files['psd.xml.gz'].get(
            ).read() == psd
        # Counters continue where they were.
        second = client.events.create(
            filename='coinc.xml', filecontents=read(COINC), group='CBC',
            pipeline='gstlal')
        assert second['graceid'] == 'G0002'
        assert client.superevents.create(
            t_start=1, t_0=event['gpstime'], t_end=event['gpstime'] + 1,
            preferred_event='G0002')['superevent_id'] == 'S170810b'


def test_alerts_wait_for_transport_and_survive_restart(tmp_path, redis_url,
                                                         subscriber):
    """Alerts committed while the transport is down go out later, in order,
    even after a restart of the server."""
    data_dir = str(tmp_path / 'gracedb')
    dead_redis = RedisTransport('redis://127.0.0.1:1/0')
    dead_redis.name = RedisTransport(redis_url).name  # same cursor key
    with GraceDbServer(data_dir, port=0, transports=[dead_redis]) as server:
        client = Client(server.url, force_noauth=True)
        event = client.events.create(
            filename='coinc.xml', filecontents=read(COINC), group='CBC',
            pipeline='gstlal')
        client.events[event['graceid']].labels.create('INJ')
        time.sleep(0.3)
    assert subscriber.alerts == []
    with GraceDbServer(data_dir, port=0,
                       transports=[RedisTransport(redis_url)]):
        alerts = subscriber.wait_for(2)
    assert [(node, alert['alert_type']) for node, alert in alerts] == \
        [('cbc_gstlal', 'new'), ('cbc_gstlal', 'label_added')]


def test_concurrent_writes(gracedb_server):
    """Many clients at once: every request succeeds and ids are unique."""
    coinc = read(COINC)

    def work(i):
        client = Client(gracedb_server.url, force_noauth=True)
        event = client.events.create(
            filename='coinc.xml', filecontents=coinc, group='CBC',
            pipeline='gstlal')
        t_0 = 1e9 + 1000 * i
        superevent = client.superevents.create(
            t_start=t_0 - 1, t_0=t_0, t_end=t_0 + 1,
            preferred_event=event['graceid'])
        client.superevents[superevent['superevent_id']].logs.create(
            comment=f'from {i}', filename='n.txt',
            filecontents=str(i).encode())
        return event['graceid'], superevent['superevent_id']

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(24)))
    graceids, sids = zip(*results, strict=True)
    assert len(set(graceids)) == len(set(sids)) == 24
    client = Client(gracedb_server.url, force_noauth=True)
    for i, sid in enumerate(sids):
        assert client.superevents[sid].files['n.txt'].get().read() == \
            str(i).encode()


@pytest.mark.integration
def test_command_line(tmp_path, redis_url, subscriber):
    """``gwcelery gracedb-server`` serves, publishes alerts to the broker's
    Redis and stops cleanly on SIGTERM."""
    env = dict(os.environ, CELERY_BROKER_URL=redis_url)
    process = subprocess.Popen(
        [sys.executable, '-m', 'gwcelery', 'gracedb-server', '--port', '0',
         '--data-dir', str(tmp_path / 'data')],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r'API (http\S+/api/)', line).group(1)
        client = Client(url, force_noauth=True)
        client.events.create(filename='coinc.xml', filecontents=read(COINC),
                             group='CBC', pipeline='gstlal')
        assert [alert['alert_type'] for _, alert in
                subscriber.wait_for(1)] == ['new']
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert os.path.exists(tmp_path / 'data' / 'gracedb.sqlite3')
