"""Sending public alerts over Kafka (SCiMMA's Avro, GCN's JSON).

:func:`send_alert` goes with every VOEvent that
:func:`gwcelery.tasks.alerts.send_voevent` sends, when
:obj:`~gwcelery.conf.kafka_alert_config` names destinations: it builds the
record of the notice (:mod:`gwcelery.kafka.alerts`) from the same data,
validates it (an invalid record is a bug: the task fails and sends
nothing), and has :func:`send_message` write it to each destination with
hop-client (retried on its own) and upload it to the superevent (e.g.
``S230101a-preliminary.json``).
"""

import datetime

import adc.errors
import confluent_kafka
from celery.utils.log import get_task_logger
from hop import Stream

from .. import app
from ..kafka import alerts as kafka_alerts
from . import circulars, gracedb

log = get_task_logger(__name__)

#: Comment of the log entry that keeps a sent message.
SENT_COMMENT = 'Kafka alert notice sent to {url}'


def now_iso():
    """The current UTC time, to the second, in ISO 8601 with ``Z``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%SZ')


def write(url, data, fmt, key):
    """Write one message to the topic of a ``kafka://host/topic`` URL and
    wait until the broker has it: hop raises if it was not delivered
    within :obj:`~gwcelery.conf.kafka_produce_timeout`. Messages of one
    `key` (the superevent) go to one partition, in order.
    The ``_format`` header is hop's, so that hop consumers decode it."""
    stream = Stream(auth=app.conf['kafka_hop_auth'])
    # No offload of large messages to other storage: consumers of the
    # alert topics read the message itself (and Tansu does not describe
    # topic configurations, which offloading needs).
    timeout = datetime.timedelta(seconds=app.conf['kafka_produce_timeout'])
    with stream.open(url, 'w', automatic_offload=False,
                     produce_timeout=timeout) as producer:
        producer.write_raw(data, [('_format', fmt.encode())], key=key)
        # Longer than the message's own timeout, so that its delivery
        # report (which raises on failure) comes before the close.
        producer.flush(2 * timeout)


def record(superevent, alert_type, skymap_filename, em_bright_json,
           p_astro_json, coincidence):
    """The validated record of a notice; downloads its sky maps."""
    superevent_id = superevent['superevent_id']
    skymap = combined = None
    if alert_type != 'Retraction':
        if skymap_filename is not None:
            skymap = gracedb.download(skymap_filename, superevent_id)
        if coincidence and coincidence.get('combined_skymap_filename'):
            combined = gracedb.download(
                coincidence['combined_skymap_filename'], superevent_id)
    event = superevent['preferred_event_data']
    significant = kafka_alerts.is_significant(
        event, app.conf['kafka_significant_far_threshold'],
        app.conf['preferred_event_trials_factor'])
    result = kafka_alerts.build(
        superevent, alert_type, now_iso(),
        {'gracedb': circulars.superevent_page(superevent_id)},
        significant, skymap, em_bright_json, p_astro_json, coincidence,
        combined)
    kafka_alerts.validate(result)
    return result


@app.task(shared=False, ignore_result=True,
          autoretry_for=(adc.errors.KafkaException,
                         confluent_kafka.KafkaException),
          retry_backoff=True, retry_backoff_max=60, max_retries=5)
def send_message(data, name, url, fmt, superevent_id, alert_type):
    """Write one serialised notice to a destination (retried, with
    backoff, if the broker does not take it), then upload it to the
    superevent, tagged ``public`` and ``em_follow``."""
    write(url, data, fmt, superevent_id)
    log.info('%s: %s notice sent to Kafka %s (%s)', superevent_id,
             alert_type, name, url)
    gracedb.upload.delay(
        data, kafka_alerts.notice_filename(superevent_id, alert_type, fmt),
        superevent_id, SENT_COMMENT.format(url=url), ['public', 'em_follow'])


@app.task(shared=False, ignore_result=True)
def send_alert(superevent, alert_type, skymap_filename=None,
               em_bright_json=None, p_astro_json=None, coincidence=None):
    """Build and validate the ``alert_type`` notice of `superevent`, then
    send it to every destination of
    :obj:`~gwcelery.conf.kafka_alert_config`, each on its own
    (:func:`send_message`)."""
    superevent_id = superevent['superevent_id']
    destinations = app.conf['kafka_alert_config']
    if not destinations:
        return
    notice = record(superevent, alert_type, skymap_filename,
                    em_bright_json, p_astro_json, coincidence)
    for name, destination in sorted(destinations.items()):
        fmt = destination['format']
        send_message.delay(kafka_alerts.serialize(notice, fmt), name,
                           destination['url'], fmt, superevent_id,
                           alert_type)
