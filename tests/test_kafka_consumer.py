"""The listeners' Kafka consumer loop against a real broker: a message
whose handlers could not be queued is read again, and one handled is
committed."""

from confluent_kafka import Producer

from gwcelery.kafka.consumer import consume, consumer_config
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
