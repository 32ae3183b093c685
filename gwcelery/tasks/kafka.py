"""Sending public alerts over Kafka (SCiMMA's Avro, GCN's JSON).

:func:`send_alert` goes with every VOEvent that
:func:`gwcelery.tasks.alerts.send_voevent` sends, when
:obj:`~gwcelery.conf.kafka_alert_config` names destinations: it builds the
record of the notice (:mod:`gwcelery.kafka.alerts`) from the same data,
validates it (an invalid record is a bug: the task fails and sends
nothing), writes it to each destination with hop-client, and uploads each
message to the superevent (e.g. ``S230101a-preliminary.json``).
"""

import datetime

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
    wait until the broker has it (hop raises if it was not delivered).
    Messages of one `key` (the superevent) go to one partition, in
    order.
    The ``_format`` header is hop's, so that hop consumers decode it."""
    stream = Stream(auth=app.conf['kafka_hop_auth'])
    # No offload of large messages to other storage: consumers of the
    # alert topics read the message itself (and Tansu does not describe
    # topic configurations, which offloading needs).
    with stream.open(url, 'w', automatic_offload=False) as producer:
        producer.write_raw(data, [('_format', fmt.encode())], key=key)


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


@app.task(shared=False, ignore_result=True)
def send_alert(superevent, alert_type, skymap_filename=None,
               em_bright_json=None, p_astro_json=None, coincidence=None):
    """Send the ``alert_type`` notice of `superevent` to every destination
    of :obj:`~gwcelery.conf.kafka_alert_config` and upload each message
    to the superevent, tagged ``public`` and ``em_follow``."""
    superevent_id = superevent['superevent_id']
    destinations = app.conf['kafka_alert_config']
    if not destinations:
        return
    notice = record(superevent, alert_type, skymap_filename,
                    em_bright_json, p_astro_json, coincidence)
    for name, destination in sorted(destinations.items()):
        fmt = destination['format']
        data = kafka_alerts.serialize(notice, fmt)
        write(destination['url'], data, fmt, superevent_id)
        log.info('%s: %s notice sent to Kafka %s (%s)', superevent_id,
                 alert_type, name, destination['url'])
        gracedb.upload.delay(
            data, kafka_alerts.notice_filename(superevent_id, alert_type,
                                               fmt),
            superevent_id, SENT_COMMENT.format(url=destination['url']),
            ['public', 'em_follow'])
