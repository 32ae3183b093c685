"""igwn-alert over Kafka: the local GraceDB server publishes its alerts to
a real broker, lvalert.listen (in a real worker started by a real Beat)
reads them; the listener and the broker restart mid-stream without
losing or repeating an alert."""

import json
import os
import re

import pytest
import redis
from confluent_kafka import Producer
from gracedb_sdk import Client

from gwcelery import app
from gwcelery.kafka import igwn_alert
from gwcelery.util import dead_letters
from gwcelery.util.dead_letters import Rejected
from gwcelery.util.kafka_broker import KafkaBroker

from .conftest import DATA_DIR
from .kafka_support import SESSION_TIMEOUT_MS, kafka_broker  # noqa: F401
from .listener_support import WORKER_ARGS, listener_settings, running, wait_for
from .listener_tasks import LVALERT_KEY
from .test_dead_letters import (  # noqa: F401
    ALERT,
    DEEP_JSON,
    NOT_UTF8,
    handled,
    run_in_thread,
    stop,
    strict,
)

GROUP = 'gracedb-test'

#: Log messages written while the listener or the broker is down.
COMMENTS = tuple(f'kafka test {n}' for n in range(4))


def test_message_forms():
    text = '{"uid": "S1"}'
    assert igwn_alert.alert_text(igwn_alert.encode(text)) == text
    assert json.loads(igwn_alert.alert_text(text.encode())) == {'uid': 'S1'}
    for value, reason in ((b'\xff not json', 'not JSON (UnicodeDecodeError'),
                          (None, 'a tombstone'),
                          (b'[' * 100000, 'not JSON (RecursionError')):
        with pytest.raises(Rejected, match=re.escape(reason)):
            igwn_alert.alert_text(value)
    assert igwn_alert.node_of(igwn_alert.topic_of(GROUP, 'cbc_gstlal')) == \
        'cbc_gstlal'


def received(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(item) for item in client.lrange(LVALERT_KEY, 0, -1)]
    finally:
        client.close()


def comments(redis_url):
    return [alert['data']['comment'] for alert in received(redis_url)
            if alert['alert_type'] == 'log'
            and alert['data']['comment'] in COMMENTS]


@pytest.fixture
def durable_broker(tmp_path):
    with KafkaBroker(data_dir=str(tmp_path / 'kafka'), durable=True) as b:
        yield b


@pytest.mark.integration
def test_restarts_lose_and_repeat_nothing(
        gracedb, durable_broker, start_worker, start_beat, worker_settings,
        redis_url):
    gracedb.add_transport(igwn_alert.KafkaTransport(durable_broker.url,
                                                    GROUP))
    listener_settings(
        worker_settings, gracedb_url=gracedb.url, lvalert_transport='kafka',
        igwn_alert_url=durable_broker.url, igwn_alert_group=GROUP,
        kafka_hop_auth=False,
        kafka_consumer_session_timeout=SESSION_TIMEOUT_MS / 1000)
    worker = start_worker('celery', 'celery', *WORKER_ARGS)
    start_beat()
    running('gwcelery.tasks.lvalert.listen')

    client = Client(gracedb.url, force_noauth=True)
    with open(os.path.join(DATA_DIR, 'gracedb', 'coinc.xml'), 'rb') as f:
        event = client.events.create(
            filename='coinc.xml', filecontents=f.read(), group='CBC',
            pipeline='gstlal', search='AllSky')
    graceid = event['graceid']
    wait_for(lambda: received(redis_url), 60, message='the new event alert')
    assert 'igwn-alert: reading' in worker.log()

    # The listener stops (warm shutdown); alerts go on; the broker
    # restarts; more alerts; a new worker's listener reads from the last
    # committed offset.
    worker.stop()
    client.events[graceid].logs.create(comment=COMMENTS[0])
    client.events[graceid].logs.create(comment=COMMENTS[1])
    gracedb.flush_alerts(30)
    durable_broker.restart()
    client.events[graceid].logs.create(comment=COMMENTS[2])
    gracedb.flush_alerts(30)
    start_worker('celery2', 'celery', *WORKER_ARGS)
    wait_for(lambda: set(COMMENTS[:3]) <= set(comments(redis_url)), 60,
             message='the alerts sent while the listener was down')

    # The broker restarts under the running listener.
    durable_broker.restart()
    client.events[graceid].logs.create(comment=COMMENTS[3])
    wait_for(lambda: COMMENTS[3] in comments(redis_url), 60,
             message='the alert sent after the broker restarted')

    assert sorted(comments(redis_url)) == sorted(COMMENTS)
    alerts = received(redis_url)
    assert (alerts[0]['uid'], alerts[0]['alert_type']) == (graceid, 'new')
    assert [(a['uid'], a['alert_type']) for a in alerts].count(
        (graceid, 'new')) == 1


def test_hostile_messages_are_dead_lettered_and_committed(
        kafka_broker, handled, redis_url, monkeypatch):  # noqa: F811
    """A tombstone, JSON nested 100,000 deep (raw and in hop's form), bytes
    that are not UTF-8 and a JSON list go to the dead letters with their
    offsets and are committed; the valid alert behind them is handled."""
    for key, value in {'igwn_alert_url': kafka_broker.url,
                       'igwn_alert_group': GROUP, 'kafka_hop_auth': False,
                       'igwn_alert_consumer_group': 'dead-letter-test',
                       'kafka_consumer_session_timeout':
                           SESSION_TIMEOUT_MS / 1000}.items():
        monkeypatch.setitem(app.conf, key, value)
    topic = igwn_alert.topic_of(GROUP, 'cbc_gstlal')
    producer = Producer({'bootstrap.servers': kafka_broker.bootstrap_servers})
    for value in (None, DEEP_JSON.encode(), igwn_alert.encode(DEEP_JSON),
                  NOT_UTF8, igwn_alert.encode('[1, 2]'),
                  igwn_alert.encode(ALERT.decode())):
        producer.produce(topic, value, partition=0)  # in this order
    assert producer.flush(20) == 0

    def listen_until(count):
        task, thread = run_in_thread(igwn_alert.listen, app.conf,
                                     ['cbc_gstlal'], strict)
        try:
            wait_for(lambda: len(handled) == count, 60,
                     message=f'{count} valid alert(s)')
        finally:
            stop(task, thread)

    listen_until(1)
    letters = dead_letters.read(redis_url)[::-1]
    assert [(letter['where']['offset'], letter['reason'][:45])
            for letter in letters] == [
        (0, 'a tombstone (a message without value)'),
        (1, 'a message that is not JSON (RecursionError: m'),
        # hop's form is JSON: its content is not.
        (2, 'a message on cbc_gstlal that is not JSON (Rec'),
        (3, 'a message that is not JSON (UnicodeDecodeErro'),
        (4, 'a message on cbc_gstlal: a JSON list, not an ')]
    assert letters[0]['where'] == {'topic': topic, 'partition': 0,
                                   'offset': 0}
    assert letters[0]['transport'] == 'igwn-alert'

    # All committed: the group's next listener reads only what follows.
    producer.produce(topic, igwn_alert.encode(ALERT.decode()), partition=0)
    assert producer.flush(20) == 0
    listen_until(2)
    assert dead_letters.count(redis_url) == 5
