"""Helpers of the Kafka tests: a real broker and a plain consumer."""

import json
import time
import uuid

import pytest
from confluent_kafka import Consumer

from gwcelery.util.kafka_broker import KafkaBroker

#: Session timeout of the test consumers: Tansu answers the first
#: JoinGroup after half of it.
SESSION_TIMEOUT_MS = 4000


@pytest.fixture
def kafka_broker(tmp_path):
    """A Tansu broker (memory storage) for one test."""
    with KafkaBroker(data_dir=str(tmp_path / 'kafka')) as broker:
        yield broker


def read_messages(bootstrap_servers, topics, count, timeout=30):
    """Read `count` messages of `topics` from their start with a new
    consumer group; return them (``confluent_kafka.Message``)."""
    consumer = Consumer({
        'bootstrap.servers': bootstrap_servers,
        'group.id': f'test-{uuid.uuid4().hex}',
        'auto.offset.reset': 'earliest',
        'session.timeout.ms': SESSION_TIMEOUT_MS,
        'heartbeat.interval.ms': 500})
    messages = []
    try:
        consumer.subscribe(list(topics))
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages


def json_value(message):
    """The decoded JSON value of a message."""
    return json.loads(message.value())
