"""The private Kafka broker: produce, consume, restart."""

import uuid

import pytest
from confluent_kafka import Producer

from gwcelery.util.kafka_broker import KafkaBroker

from .kafka_support import kafka_broker, read_messages  # noqa: F401


def produce(broker, topic, values):
    producer = Producer({'bootstrap.servers': broker.bootstrap_servers})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(20) == 0


def test_produce_consume(kafka_broker):  # noqa: F811
    topic = f't{uuid.uuid4().hex}'
    produce(kafka_broker, topic, [b'one', b'two'])
    values = sorted(m.value() for m in read_messages(
        kafka_broker.bootstrap_servers, [topic], 2))
    assert values == [b'one', b'two']


@pytest.mark.integration
def test_durable_restart_keeps_messages(tmp_path):
    with KafkaBroker(data_dir=str(tmp_path), durable=True) as broker:
        produce(broker, 'kept', [b'before'])
        port = broker.port
        broker.restart()
        assert broker.port == port
        produce(broker, 'kept', [b'after'])
        values = sorted(m.value() for m in read_messages(
            broker.bootstrap_servers, ['kept'], 2))
        assert values == [b'after', b'before']
        processes = (broker.process, broker.s3_process)
    assert all(process.poll() is not None for process in processes)
