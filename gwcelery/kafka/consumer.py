"""The Kafka consumer loop of the listeners (igwn-alert, GCN notices).

:func:`consume` reads the topics as one consumer group and hands each
message to a function; it commits the message's offset only after that
function returned, i.e. after the handler tasks were queued, so that a
listener that stops (or a broker that restarts) loses nothing: the next
consumer of the group starts after the last committed message.

A message that the function could not hand on because the Celery broker
or Redis is down is read again after a delay; one that fails for any
other reason (not JSON, nested too deep, a tombstone...) is the message's
fault: it is dead-lettered (:mod:`gwcelery.util.dead_letters`) and
committed, so that the messages behind it on its partition are handled.
"""

import logging
import urllib.parse

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from ..util.dead_letters import DeadLetters, is_broker_error, reason_of
from ..util.eternal import POLL_INTERVAL, Backoff, wait_unless_aborted

log = logging.getLogger(__name__)

#: Port of a ``kafka://`` URL that names none.
DEFAULT_PORT = 9092


def bootstrap_servers(url):
    """``host:port`` of a ``kafka://host[:port]/...`` URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != 'kafka' or not parsed.hostname:
        raise ValueError(f'not a kafka://host[:port] URL: {url!r}')
    return f'{parsed.hostname}:{parsed.port or DEFAULT_PORT}'


def hop_credentials(url):
    """The librdkafka settings of hop-client's credential for the host of
    `url` (``hop auth add``)."""
    from hop.auth import load_auth, select_matching_auth

    host = bootstrap_servers(url)
    return dict(select_matching_auth(load_auth(), host)())


def consumer_config(url, group_id, session_timeout, credentials=None):
    """librdkafka settings of a listener's consumer: offsets committed by
    hand, first reading from the earliest message of a topic."""
    config = {'bootstrap.servers': bootstrap_servers(url),
              'group.id': group_id,
              'enable.auto.commit': False,
              'auto.offset.reset': 'earliest',
              'session.timeout.ms': int(session_timeout * 1000),
              'heartbeat.interval.ms': max(
                  100, int(session_timeout * 1000 / 4)),
              # New topics (a node's first alert) are seen within
              # seconds, not librdkafka's default five minutes.
              'topic.metadata.refresh.interval.ms': 5000,
              **(credentials or {})}
    return config


def _is_harmless(error):
    """Errors that only say that a subscribed topic does not exist yet or
    that a partition was read to its end."""
    return error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                            KafkaError._PARTITION_EOF)


def consume(task, config, topics, handle, name, backoff=None,
            consumer_class=Consumer, letters=None):
    """Read `topics` with a consumer of `config` until ``task.is_aborted()``;
    call ``handle(message)`` for each message, then commit its offset.

    `consumer_class` makes the consumer from `config` (e.g.
    :class:`gcn_kafka.Consumer`, with its credentials bound).
    A Kafka error closes the consumer and opens a new one after a delay
    (`backoff`, a :class:`~gwcelery.util.eternal.Backoff`). When `handle`
    raises a broker error (the handlers could not be queued: see
    :func:`~gwcelery.util.dead_letters.is_broker_error`), the message is
    not committed but read again after the delay; any other exception is
    the message's fault: it is rejected to `letters` (a
    :class:`~gwcelery.util.dead_letters.DeadLetters`; ``None``: only
    logged) and committed.
    """
    backoff = backoff or Backoff(1, 60)
    letters = letters or DeadLetters(None)
    while not task.is_aborted():
        try:
            consumer = consumer_class(config)
        except KafkaException as exc:
            delay = backoff.next()
            log.error('%s: cannot create the Kafka consumer (%s); retrying '
                      'in %.0f s', name, exc, delay)
            wait_unless_aborted(task, delay)
            continue
        try:
            consumer.subscribe(list(topics))
            log.info('%s: reading %d Kafka topic(s) at %s as group %s',
                     name, len(topics),
                     config.get('bootstrap.servers', 'the default broker'),
                     config['group.id'])
            _poll(task, consumer, handle, name, backoff, letters)
        except KafkaException as exc:
            delay = backoff.next()
            log.warning('%s: Kafka consumer failed (%s); reconnecting in '
                        '%.0f s', name, exc, delay)
            wait_unless_aborted(task, delay)
        finally:
            consumer.close()


def _poll(task, consumer, handle, name, backoff, letters):
    """Handle and commit each message until the task is aborted; raise
    :exc:`KafkaException` on a fatal error of the consumer."""
    while not task.is_aborted():
        message = consumer.poll(POLL_INTERVAL)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.log(logging.DEBUG if _is_harmless(error) else logging.WARNING,
                    '%s: Kafka: %s', name, error)
            continue
        if _handle(task, consumer, message, handle, name, backoff, letters):
            consumer.commit(message, asynchronous=False)


def _handle(task, consumer, message, handle, name, backoff, letters):
    """Hand one message on; return whether to commit it: yes once handed
    on or dead-lettered, no (it is read again after a delay) when the
    Celery broker is down."""
    try:
        handle(message)
    except Exception as exc:
        if not is_broker_error(exc):
            letters.reject(name, exc, message.value(),
                           topic=message.topic(),
                           partition=message.partition(),
                           offset=message.offset())
            return True
        delay = backoff.next()
        log.warning('%s: could not hand on the message at %s[%d]@%d (%s); '
                    'reading it again in %.0f s', name, message.topic(),
                    message.partition(), message.offset(), reason_of(exc),
                    delay)
        consumer.seek(TopicPartition(message.topic(), message.partition(),
                                     message.offset()))
        wait_unless_aborted(task, delay)
        return False
    backoff.reset()
    return True
