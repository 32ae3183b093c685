"""The listeners' Kafka consumer loop against a real broker: a message
whose handlers could not be queued is read again, one handled is
committed, and one at fault is dead-lettered and committed."""

import json

import kombu.exceptions
from confluent_kafka import Producer

from gwcelery.kafka.consumer import consume, consumer_config
from gwcelery.util import dead_letters
from gwcelery.util.eternal import Backoff

from .kafka_support import SESSION_TIMEOUT_MS, kafka_broker  # noqa: F401


class StopAfter:
    """A stand-in for the eternal task: aborted once `count` messages were
    handled."""

    def __init__(self, count):
        self.count = count
        self.handled = []

    def is_aborted(self):
        return len(self.handled) >= self.count


def test_failed_handling_is_retried_then_committed(kafka_broker):  # noqa: F811
    producer = Producer({'bootstrap.servers': kafka_broker.bootstrap_servers})
    for value in (b'first', b'second'):
        producer.produce('retry', value, key=b'one-partition')
    assert producer.flush(20) == 0
    config = consumer_config(kafka_broker.url, 'retry-group',
                             SESSION_TIMEOUT_MS / 1000)
    attempts = []
    task = StopAfter(2)

    def handle(message):
        attempts.append(message.value())
        if attempts.count(b'first') == 1:
            raise ConnectionError('the Celery broker is down')
        task.handled.append(message.value())

    consume(task, config, ['retry'], handle, 'test', Backoff(0.1, 0.2))
    assert attempts == [b'first', b'first', b'second']
    assert task.handled == [b'first', b'second']

    # Both were committed: the group's next consumer finds nothing more,
    # only what comes next.
    producer.produce('retry', b'third', key=b'one-partition')
    assert producer.flush(20) == 0
    later = StopAfter(1)
    consume(later, config, ['retry'],
            lambda message: later.handled.append(message.value()), 'test',
            Backoff(0.1, 0.2))
    assert later.handled == [b'third']


def test_poison_is_dead_lettered_and_broker_errors_are_retried(
        kafka_broker, redis_url):  # noqa: F811
    producer = Producer({'bootstrap.servers': kafka_broker.bootstrap_servers})
    values = (b'"first"', b'[' * 100000 + b']' * 100000, None, b'"second"')
    for value in values:
        producer.produce('poison', value, partition=0)
    assert producer.flush(20) == 0
    config = consumer_config(kafka_broker.url, 'poison-group',
                             SESSION_TIMEOUT_MS / 1000)
    attempts = []
    task = StopAfter(2)

    def handle(message):
        attempts.append(message.value())
        if attempts == [b'"first"']:
            raise kombu.exceptions.OperationalError('the broker is down')
        task.handled.append(json.loads(message.value()))

    letters = dead_letters.DeadLetters(redis_url)
    consume(task, config, ['poison'], handle, 'test', Backoff(0.1, 0.2),
            letters=letters)
    # The broker error: read again, not dead-lettered; the poison: read
    # once each, dead-lettered, and the message behind them handled.
    assert attempts == [values[0], *values]
    assert task.handled == ['first', 'second']
    deep, tombstone = dead_letters.read(redis_url)[::-1]
    assert deep['reason'].startswith(
        'a message that raised RecursionError: maximum recursion')
    assert deep['where'] == {'topic': 'poison', 'partition': 0, 'offset': 1}
    assert tombstone['reason'].startswith('a message that raised TypeError')
    assert tombstone['where']['offset'] == 2

    # All four were committed.
    producer.produce('poison', b'"third"', partition=0)
    assert producer.flush(20) == 0
    later = StopAfter(1)
    consume(later, config, ['poison'],
            lambda message: later.handled.append(message.value()), 'test',
            Backoff(0.1, 0.2), letters=letters)
    assert later.handled == [b'"third"']
    assert dead_letters.count(redis_url) == 2
