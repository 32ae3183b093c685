"""igwn-alert: GraceDB's alerts over Kafka (``lvalert_transport =
'kafka'``).

GraceDB publishes each LVAlert message of node ``NODE`` to the Kafka
topic ``GROUP.NODE`` (:obj:`~gwcelery.conf.igwn_alert_group`, e.g.
``gracedb-playground.superevent``) of the broker
:obj:`~gwcelery.conf.igwn_alert_url`, as a hop-client JSON message whose
content is the LVAlert JSON text. :func:`listen` reads these topics and
hands each message to :func:`gwcelery.tasks.lvalert.process_message`,
committing its offset once the handlers are queued (see
:mod:`gwcelery.kafka.consumer`). The boundary is explicit: a message that
cannot be decoded (:func:`alert_text` raises
:exc:`~gwcelery.util.dead_letters.Rejected`: a tombstone, not JSON,
nested too deep...) or that ``process_message`` rejects is dead-lettered
and committed; one whose dispatch meets a broker error is read again.
:class:`KafkaTransport` is the other end, for the local GraceDB server.
"""

import json
import logging

from confluent_kafka import KafkaException, Producer

from ..util.dead_letters import DeadLetters, Rejected
from .consumer import (
    bootstrap_servers,
    consume,
    consumer_config,
    hop_credentials,
)

log = logging.getLogger(__name__)


def topic_of(group, node):
    """Kafka topic of a node: ``GROUP.NODE``."""
    return f'{group}.{node}'


def node_of(topic):
    """Node of a Kafka topic: the part after the first ``.``."""
    return topic.partition('.')[2]


def alert_text(value):
    """The LVAlert JSON text of a message value: hop's JSON message of the
    text (igwn-alert's form), or the JSON object itself. Raise
    :exc:`Rejected` with the reason for anything else."""
    if value is None:
        raise Rejected('a tombstone (a message without value)')
    try:
        content = json.loads(value)
    except Exception as exc:
        # Any: RecursionError (nested deeper than the parser goes),
        # UnicodeDecodeError, MemoryError...; raised without its context,
        # whose traceback may be thousands of frames deep.
        raise Rejected(f'a message that is not JSON ({type(exc).__name__}: '
                       f'{exc})') from None
    return content if isinstance(content, str) else json.dumps(content)


def encode(text):
    """The message value that carries LVAlert JSON `text` (igwn-alert's
    form: hop's JSON message of the text)."""
    return json.dumps(text).encode()


def listen(task, conf, nodes, process_message):
    """Read the nodes' topics and dispatch each message until the task is
    aborted (see the module docstring); `conf` is the app's
    configuration."""
    url = conf['igwn_alert_url']
    credentials = hop_credentials(url) if conf['kafka_hop_auth'] else None
    config = consumer_config(url, conf['igwn_alert_consumer_group'],
                             conf['kafka_consumer_session_timeout'],
                             credentials)
    group = conf['igwn_alert_group']

    def handle(message):
        process_message(node_of(message.topic()),
                        alert_text(message.value()))

    letters = DeadLetters.from_conf(conf)
    try:
        consume(task, config, [topic_of(group, node) for node in nodes],
                handle, 'igwn-alert', letters=letters)
    finally:
        letters.close()


class KafkaTransport:
    """Publish the local GraceDB server's alerts over Kafka as GraceDB's
    igwn-alert does (see the module docstring); a transport of
    :mod:`gwcelery.gracedb_server.alerts`."""

    def __init__(self, url, group):
        self.group = group
        self.name = f'kafka {url} {group}'
        self.producer = Producer({'bootstrap.servers': bootstrap_servers(url),
                                  'enable.idempotence': True})

    def publish(self, node, message):
        """Send one message and wait until the broker has it."""
        self.publish_many([(node, message)])

    def publish_many(self, items):
        """Send ``(node, message)`` pairs in order; raise unless the broker
        has them all."""
        failures = []

        def delivered(error, _message):
            if error is not None:
                failures.append(error)

        for node, message in items:
            self.producer.produce(topic_of(self.group, node), encode(message),
                                  headers=[('_format', b'json')],
                                  on_delivery=delivered)
        if self.producer.flush(30) or failures:
            raise KafkaException(failures[0] if failures else
                                 'messages still queued after 30 s')

    def close(self):
        """Send what is queued."""
        self.producer.flush(10)
