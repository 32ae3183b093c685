"""Milestone lines of ``gwcelery local``, from real alert payloads."""

import json
import os
import time

import pytest
import redis

from gwcelery.tools.milestones import MilestoneReporter, describe_alert
from gwcelery.util import dead_letters
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


def test_reporter_reads_redis_pubsub(redis_url):
    lines = []
    reporter = MilestoneReporter(redis_url, 'lvalert:', lines.append)
    client = redis.Redis.from_url(redis_url)
    payload = json.dumps(load_alert('lvalert_event_creation.json'))
    # One alert goes to two nodes; garbage is skipped with a warning.
    client.publish('lvalert:cbc_gstlal', payload)
    client.publish('lvalert:cbc_gstlal_mdc', payload)
    client.publish('lvalert:cbc_gstlal', b'{not json')
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
    for message in hostile:
        client.publish('lvalert:cbc_gstlal', message)
    client.publish('lvalert:cbc_gstlal',
                   json.dumps(load_alert('lvalert_event_creation.json')))
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
    assert letters[0]['where'] == {'channel': 'lvalert:cbc_gstlal'}


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


def test_reporter_subscribes_again_after_a_redis_restart(tmp_path, caplog):
    server = RedisServer(data_dir=str(tmp_path / 'redis')).start()
    lines = []
    reporter = MilestoneReporter(server.url, 'lvalert:', lines.append)
    reporter.reconnect_interval = 0.2
    payload = json.dumps(load_alert('lvalert_event_creation.json'))
    try:
        server.process.kill()
        server.process.wait()
        for _ in range(20):  # polls during the outage: one warning only
            reporter.poll()
            time.sleep(0.05)
        server.start()
        client = redis.Redis.from_url(server.url)

        def published_and_reported():
            reporter.poll()
            client.publish('lvalert:cbc_gstlal', payload)
            return lines
        wait_for(published_and_reported, 20, message='a milestone again')
        client.close()
    finally:
        reporter.close()
        server.stop()
    assert lines[0].startswith('event M394156 uploaded')
    assert caplog.text.count('lost the alert subscription') == 1
    assert 'subscribed to the alerts again' in caplog.text
