"""lvalert.listen in a real worker, started by a real Beat: over the Redis
alert stream from the local GraceDB server, and over XMPP from a real prosody
(sleek-lvalert)."""

import json
import os
import signal

import lxml.etree
import pytest
import redis
from gracedb_sdk import Client

from gwcelery.util.alert_stream import AlertStream

from .conftest import DATA_DIR
from .listener_support import WORKER_ARGS, listener_settings, running, wait_for
from .listener_tasks import LVALERT_KEY, NODES

pytestmark = pytest.mark.integration


def load(name):
    with open(os.path.join(DATA_DIR, 'gracedb', name), 'rb') as f:
        return f.read()


def received(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(item) for item in client.lrange(LVALERT_KEY, 0, -1)]
    finally:
        client.close()


def test_redis_transport_from_the_local_gracedb_server(
        gracedb, start_worker, start_beat, worker_settings, redis_url):
    listener_settings(worker_settings, gracedb_url=gracedb.url)
    worker = start_worker('celery', 'celery', *WORKER_ARGS)
    start_beat()
    running('gwcelery.tasks.lvalert.listen')
    wait_for(lambda: 'LVAlert: subscribed to' in worker.log(), 30,
             message='the subscription')

    client = Client(gracedb.url, force_noauth=True)
    event = client.events.create(
        filename='coinc.xml', filecontents=load('coinc.xml'), group='CBC',
        pipeline='gstlal', search='AllSky')
    graceid = event['graceid']
    wait_for(lambda: received(redis_url), 30, message='the new event alert')

    # Garbage, then an alert of another GraceDB server, on a handled node;
    # messages are handled in order, so once the last is logged all are.
    publisher = redis.Redis.from_url(redis_url)
    AlertStream(publisher).append_many(
        ('cbc_gstlal', message)
        for message in (b'{"not json', b'\xff\xfe binary', b'[1, 2]',
                        b'{"uid": "G1"}', os.urandom(2**20),
                        load('lvalert_event_creation.json')))
    publisher.close()
    wait_for(lambda: 'ignoring new M394156 on cbc_gstlal' in worker.log(),
             30, message='the foreign alert')
    log = worker.log()
    assert log.count('that is not JSON') == 3
    assert 'a JSON list, not an object' in log
    assert 'missing alert_type, object' in log

    # The listener is still there: the next alert is handled.
    client.events[graceid].labels.create('EM_READY')
    wait_for(lambda: [alert for alert in received(redis_url)
                      if alert['alert_type'] == 'label_added'
                      and alert['data']['name'] == 'EM_READY'],
             30, message='the label alert')

    # (The pipeline's own handlers, running in the same worker, add log
    # messages and labels to the event: their alerts arrive too.)
    alerts = received(redis_url)
    assert (alerts[0]['uid'], alerts[0]['alert_type']) == (graceid, 'new')
    assert alerts[0]['object']['links']['self'].startswith(gracedb.url)
    assert {alert['uid'] for alert in alerts} == {graceid}

    # SIGKILL the listener and create an event before Beat restarts it:
    # the stream kept the alert, and the new listener hands it on.
    first = running('gwcelery.tasks.lvalert.listen')
    os.kill(first['worker_pid'], signal.SIGKILL)
    second = client.events.create(
        filename='coinc.xml', filecontents=load('coinc.xml'), group='CBC',
        pipeline='gstlal', search='AllSky')['graceid']
    wait_for(lambda: [alert for alert in received(redis_url)
                      if alert['uid'] == second
                      and alert['alert_type'] == 'new'],
             60, message='the alert published while the listener was down')
    assert running('gwcelery.tasks.lvalert.listen')['id'] != first['id']

#: Stands for production GraceDB in the sample alerts, so that the
#: pipeline's handlers in the test worker never contact the real one.
FAKE_GRACEDB = 'http://127.0.0.1:9/'


def entry_of_stanza():
    """The JSON text of the item in the real LVAlert stanza, with its
    GraceDB URLs pointing at :data:`FAKE_GRACEDB`."""
    root = lxml.etree.fromstring(load('lvalert_xmpp.xml'))
    entry, = root.iter('{http://jabber.org/protocol/pubsub}entry')
    return entry.text.replace('https://gracedb.ligo.org/', FAKE_GRACEDB)


def test_xmpp_transport_with_sleek_lvalert(
        xmpp_server, start_worker, start_beat, worker_settings, redis_url):
    xmpp_server.create_nodes(*NODES)
    listener_settings(worker_settings, gracedb_url=FAKE_GRACEDB + 'api/',
                      **xmpp_server.settings)
    worker = start_worker('celery', 'celery', *WORKER_ARGS)
    start_beat()
    first = running('gwcelery.tasks.lvalert.listen')
    wait_for(lambda: worker.log().count('LVAlert: subscribed to node')
             == len(NODES), 30, message='the subscriptions')

    # An alert of another server, garbage, then the real stanza's item.
    xmpp_server.publish('cbc_gstlal', load('igwn_alert_exttrig_creation.json'))
    xmpp_server.publish('cbc_gstlal', 'not json')
    text = entry_of_stanza()
    xmpp_server.publish('cbc_gstlal', text)
    wait_for(lambda: received(redis_url), 30, message='the stanza item')
    assert received(redis_url) == [json.loads(text)]
    log = worker.log()
    assert 'ignoring new E1234 on cbc_gstlal' in log
    assert 'that is not JSON' in log

    # SIGKILL the listener: Beat restarts it, it logs in and subscribes
    # again, and the next item arrives.
    os.kill(first['worker_pid'], signal.SIGKILL)
    wait_for(lambda: running('gwcelery.tasks.lvalert.listen')['id']
             != first['id'], 30, message='a new listener')
    wait_for(lambda: worker.log().count('LVAlert: subscribed to node')
             == 2 * len(NODES), 30, message='the new subscriptions')
    alert = json.loads(load('igwn_alert_superevent_creation.json'))
    alert['object']['links']['self'] = \
        FAKE_GRACEDB + 'api/superevents/S180616h/'
    xmpp_server.publish('superevent', json.dumps(alert))
    wait_for(lambda: len(received(redis_url)) >= 2, 30,
             message='an item after the restart')
    assert received(redis_url)[1]['uid'] == 'S180616h'

