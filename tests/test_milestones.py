"""Milestone lines of ``gwcelery local``, from real alert payloads."""

import json
import os
import time

import pytest
import redis

from gwcelery.tools.milestones import MilestoneReporter, describe_alert
from gwcelery.util import dead_letters
from gwcelery.util.alert_stream import AlertStream
from gwcelery.util.redis_server import RedisServer

from .conftest import DATA_DIR
from .listener_support import wait_for


def load_alert(name):
    with open(os.path.join(DATA_DIR, 'gracedb', name)) as f:
        return json.load(f)


def test_event_upload():
    line = describe_alert(load_alert('lvalert_event_creation.json'))
    assert line.startswith('event M394156 uploaded by gstlal, FAR 9.11e-14')


def test_superevent_creation():
    line = describe_alert(load_alert('igwn_alert_superevent_creation.json'))
    assert line.startswith('superevent S180616h created, preferred event')


def test_external_trigger():
    line = describe_alert(load_alert('igwn_alert_exttrig_creation.json'))
    assert line.startswith('external trigger E1234 from Fermi')


def test_superevent_labels_and_uninteresting_alerts():
    superevent = load_alert('igwn_alert_superevent_creation.json')['object']
    alert = {'uid': 'S180616h', 'alert_type': 'label_added',
             'data': {'name': 'GCN_PRELIM_SENT'}, 'object': superevent}
    assert 'preliminary notice sent' in describe_alert(alert)
    alert['data'] = {'name': 'DQR_REQUEST'}
    assert describe_alert(alert) is None
    assert describe_alert({'alert_type': 'update', 'object': {}}) is None


def publish(client, *items):
    """Append ``(node, message)`` items as the local GraceDB server does."""
    AlertStream(client, 'lvalert:').append_many(items)


def test_reporter_reads_the_alert_stream(redis_url):
    client = redis.Redis.from_url(redis_url)
    publish(client, ('cbc_gstlal', 'an alert before the start'))
    lines = []
    reporter = MilestoneReporter(redis_url, 'lvalert:', lines.append)
    payload = json.dumps(load_alert('lvalert_event_creation.json'))
    # One alert goes to two nodes; garbage is skipped with a warning.
    publish(client, ('cbc_gstlal', payload), ('cbc_gstlal_mdc', payload),
            ('cbc_gstlal', b'{not json'))
    deadline = time.monotonic() + 5
    while not lines and time.monotonic() < deadline:
        reporter.poll()
        time.sleep(0.05)
    time.sleep(0.2)
    reporter.poll()
    reporter.close()
    assert len(lines) == 1
    assert lines[0].startswith('event M394156 uploaded')


def test_reporter_dead_letters_what_it_cannot_read(redis_url):
    """Hostile alerts (the 100,000-deep JSON that once stopped ``gwcelery
    local``) are kept as dead letters; the valid one behind them is
    reported."""
    lines = []
    reporter = MilestoneReporter(redis_url, 'lvalert:', lines.append)
    client = redis.Redis.from_url(redis_url)
    hostile = ['[' * 100000 + ']' * 100000, b'\xff\xfe\x00junk', '[1, 2]',
               '{"alert_type": "new", "object": {"far": "high"}}']
    publish(client, *[('cbc_gstlal', message) for message in hostile],
            ('cbc_gstlal',
             json.dumps(load_alert('lvalert_event_creation.json'))))
    try:
        wait_for(lambda: reporter.poll() or lines, 10, message='a line')
    finally:
        reporter.close()
        client.close()
    assert lines[0].startswith('event M394156 uploaded')
    letters = dead_letters.read(redis_url)[::-1]
    assert [letter['reason'].split(' (')[0] for letter in letters] == [
        'an alert that is not JSON', 'an alert that is not JSON',
        'an alert that is a JSON list, not an object',
        "a message that raised ValueError: Unknown format code 'g' for "
        "object of type 'str'"]
    assert 'RecursionError' in letters[0]['reason']
    assert {letter['transport'] for letter in letters} == {'milestones'}
    assert letters[0]['where'] == {'node': 'cbc_gstlal'}


@pytest.mark.parametrize('name', ['igwn_alert_voevent.json'])
def test_legacy_alerts_are_ignored_quietly(name):
    assert describe_alert(load_alert(name)) is None


def test_voevent_type_is_spelt_out():
    superevent = load_alert('igwn_alert_superevent_creation.json')['object']
    alert = {'uid': 'S180616h', 'alert_type': 'voevent',
             'data': {'voevent_type': 'PR',
                      'filename': 'S180616h-1-Preliminary.xml'},
             'object': superevent}
    assert describe_alert(alert) == ('S180616h: preliminary VOEvent '
                                     'S180616h-1-Preliminary.xml registered')


def test_reporter_reads_on_after_a_redis_restart(tmp_path, caplog):
    server = RedisServer(data_dir=str(tmp_path / 'redis')).start()
    lines = []
    reporter = MilestoneReporter(server.url, 'lvalert:', lines.append)
    payload = json.dumps(load_alert('lvalert_event_creation.json'))
    try:
        server.process.kill()
        server.process.wait()
        for _ in range(20):  # polls during the outage: one warning only
            reporter.poll()
        server.start()
        client = redis.Redis.from_url(server.url)
        publish(client, ('cbc_gstlal', payload))
        reporter.poll()
        client.close()
    finally:
        reporter.close()
        server.stop()
    assert lines[0].startswith('event M394156 uploaded')
    assert caplog.text.count('cannot read the alert stream') == 1
    assert 'reading the alert stream again' in caplog.text


def test_a_burst_between_two_polls_is_reported_whole(redis_url):
    """More than a pub/sub subscriber may fall behind (32 MB): nothing is
    lost between two polls."""
    lines = []
    reporter = MilestoneReporter(redis_url, 'lvalert:', lines.append)
    client = redis.Redis.from_url(redis_url)
    alert = load_alert('lvalert_event_creation.json')
    padding = 'x' * 200000
    for number in range(200):  # about 40 MB
        alert['uid'] = f'M{number}'
        alert['object']['padding'] = padding
        publish(client, ('cbc_gstlal', json.dumps(alert)))
    try:
        for _ in range(10):
            reporter.poll()
    finally:
        reporter.close()
        client.close()
    assert len(lines) == 200
