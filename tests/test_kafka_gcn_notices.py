"""GCN notices over Kafka: VOEvents on GCN's classic topics of a real
broker -> the gcn-kafka consumer -> the @gcn.handler tasks (eager) ->
External events on the local GraceDB server."""

import os
import threading

import pytest
from confluent_kafka import Producer

from gwcelery import app
from gwcelery.kafka import gcn_notices
from gwcelery.tasks import gcn, gracedb
from gwcelery.util import dead_letters

from .conftest import DATA_DIR
from .kafka_support import SESSION_TIMEOUT_MS, kafka_broker  # noqa: F401
from .listener_support import wait_for
from .test_dead_letters import NOT_UTF8, VOEVENT, handled  # noqa: F401

pytestmark = pytest.mark.integration  # a broker, Redis and GraceDB


def read(name):
    with open(os.path.join(DATA_DIR, 'gcn', name), 'rb') as f:
        return f.read()


class Listener:
    """gcn_notices.listen in a thread, as the eternal task runs it."""

    def __init__(self):
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=gcn_notices.listen,
            args=(self, app.conf, gcn.notice_types_handled(),
                  gcn.dispatch_voevent))
        self.thread.start()

    def is_aborted(self):
        return self.stopped.is_set()

    def stop(self):
        self.stopped.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def publish(broker, notice_type, *payloads):
    producer = Producer({'bootstrap.servers': broker.bootstrap_servers})
    for payload in payloads:
        producer.produce(gcn_notices.topic_of(notice_type), payload,
                         partition=0)  # in this order
    assert producer.flush(20) == 0


def trigger_ids():
    return sorted(event['extra_attributes']['GRB']['trigger_id']
                  for event in gracedb.get_events('group: External'))


def test_topics_and_domain():
    assert gcn_notices.topic_of(gcn.NoticeType.FERMI_GBM_GND_POS) == \
        'gcn.classic.voevent.FERMI_GBM_GND_POS'
    assert gcn_notices.gcn_domain('kafka://kafka.test.gcn.nasa.gov') == \
        'test.gcn.nasa.gov'


@pytest.mark.usefixtures('gracedb')
def test_notices_to_external_events_across_a_restart(
        kafka_broker, monkeypatch):  # noqa: F811
    for key, value in {'task_always_eager': True,
                       'task_eager_propagates': True,
                       'external_skymap_nside': 64,
                       'gcn_kafka_url': kafka_broker.url,
                       'kafka_consumer_session_timeout':
                           SESSION_TIMEOUT_MS / 1000}.items():
        monkeypatch.setitem(app.conf, key, value)
    swift = gcn.NoticeType.SWIFT_BAT_GRB_POS_ACK
    fermi = gcn.NoticeType.FERMI_GBM_GND_POS
    publish(kafka_broker, swift, b'<not xml')
    publish(kafka_broker, swift, read('swift_grb_gcn.xml'))
    listener = Listener()
    try:
        wait_for(lambda: len(trigger_ids()) == 1, 60,
                 message='the Swift External event')
    finally:
        listener.stop()
    # Sent while nobody listens: the next listener of the group reads it,
    # and nothing before it again.
    publish(kafka_broker, fermi, read('fermi_grb_gcn.xml'))
    listener = Listener()
    try:
        wait_for(lambda: len(trigger_ids()) == 2, 60,
                 message='the Fermi External event')
    finally:
        listener.stop()
    pipelines = sorted(event['pipeline']
                       for event in gracedb.get_events('group: External'))
    assert pipelines == ['Fermi', 'Swift']


def test_hostile_messages_are_dead_lettered_and_committed(
        kafka_broker, handled, redis_url, monkeypatch):  # noqa: F811
    """A tombstone, XML nested 100,000 deep, bytes that are not UTF-8 and a
    VOEvent without a usable notice type go to the dead letters; the valid
    VOEvent behind them is dispatched, once."""
    for key, value in {'gcn_kafka_url': kafka_broker.url,
                       'kafka_consumer_session_timeout':
                           SESSION_TIMEOUT_MS / 1000}.items():
        monkeypatch.setitem(app.conf, key, value)
    [kind] = gcn.notice_types_handled()
    publish(kafka_broker, kind, None, b'<a>' * 100000 + b'</a>' * 100000,
            NOT_UTF8, VOEVENT.replace(b'value="115"', b'value="G"'),
            VOEVENT)
    listener = Listener()
    try:
        wait_for(lambda: handled, 60, message='the valid VOEvent')
    finally:
        listener.stop()
    letters = dead_letters.read(redis_url)[::-1]
    assert [(letter['where']['offset'], letter['reason'].split(' (')[0])
            for letter in letters] == [
        (0, 'a tombstone'), (1, 'a message that is not XML'),
        (2, 'a message that is not XML'),
        (3, "a VOEvent whose Packet_Type value 'G' is not an integer")]
    assert {letter['transport'] for letter in letters} == {'GCN Kafka'}
    # Committed: the group's next listener dispatches nothing again.
    publish(kafka_broker, kind, VOEVENT)
    listener = Listener()
    try:
        wait_for(lambda: len(handled) == 2, 60, message='the next VOEvent')
    finally:
        listener.stop()
    assert dead_letters.count(redis_url) == 4
