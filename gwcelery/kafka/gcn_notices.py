"""GCN notices over Kafka (``gcn_kafka_url``).

GCN distributes each classic notice type as VOEvent XML on the topic
``gcn.classic.voevent.TYPE`` (e.g. ``gcn.classic.voevent.FERMI_GBM_GND_POS``)
of its Kafka brokers. :func:`listen` reads the topics of the notice types
that have a :func:`gwcelery.tasks.gcn.handler` with the ``gcn-kafka``
client and hands each VOEvent to
:func:`gwcelery.tasks.gcn.dispatch_voevent`, the dispatch of the VOEvent
listener, committing its offset once the handlers are queued. A message
that is not a VOEvent (a tombstone, not XML, nested too deep, no usable
notice type) is dead-lettered (:mod:`gwcelery.util.dead_letters`) and
committed; one whose dispatch meets a broker error is read again.
"""

import functools
import logging
import urllib.parse

import gcn_kafka

from ..util import voevent_transport as vtp
from ..util.dead_letters import DeadLetters, Rejected
from .consumer import consume, consumer_config

log = logging.getLogger(__name__)

#: Topic prefix of GCN's classic VOEvent notices.
TOPIC_PREFIX = 'gcn.classic.voevent.'


def topic_of(notice_type):
    """Kafka topic of a notice type (a :class:`gcn.NoticeType`)."""
    return TOPIC_PREFIX + notice_type.name


def gcn_domain(url):
    """GCN domain of a ``kafka://kafka.DOMAIN`` URL (``gcn.nasa.gov``,
    ``test.gcn.nasa.gov``, ``dev.gcn.nasa.gov``)."""
    host = urllib.parse.urlsplit(url).hostname or ''
    return host.removeprefix('kafka.')


def client_config(conf):
    """``(config, consumer_class)`` of the GCN consumer: gcn-kafka's OIDC
    credentials for GCN's brokers, plain TCP for a broker without
    authentication (:obj:`~gwcelery.conf.gcn_kafka_client_id` ``None``)."""
    url = conf['gcn_kafka_url']
    config = consumer_config(url, conf['gcn_kafka_consumer_group'],
                             conf['kafka_consumer_session_timeout'])
    client_id = conf['gcn_kafka_client_id']
    if client_id is None:
        config['security.protocol'] = 'plaintext'
        return config, gcn_kafka.Consumer
    return config, functools.partial(
        gcn_kafka.Consumer, client_id=client_id,
        client_secret=conf['gcn_kafka_client_secret'],
        domain=gcn_domain(url))


def handle_voevent(payload, dispatch):
    """Parse one message (a VOEvent's bytes) and dispatch it; raise
    :exc:`Rejected` for what is not XML."""
    if payload is None:
        raise Rejected('a tombstone (a message without value)')
    try:
        # The VOEvent listener's parser: no entities, no network, limited
        # depth.
        root = vtp.parse(payload)
    except Exception as exc:
        raise Rejected(f'a message that is not XML ({type(exc).__name__}: '
                       f'{exc})') from None
    return dispatch(payload, root)


def listen(task, conf, notice_types, dispatch):
    """Read the notice types' topics and dispatch each VOEvent until the
    task is aborted (see the module docstring)."""
    config, consumer_class = client_config(conf)
    topics = sorted(topic_of(kind) for kind in notice_types)
    letters = DeadLetters.from_conf(conf)
    try:
        consume(task, config, topics,
                lambda message: handle_voevent(message.value(), dispatch),
                'GCN Kafka', consumer_class=consumer_class, letters=letters)
    finally:
        letters.close()
