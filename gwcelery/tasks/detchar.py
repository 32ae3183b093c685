"""Detector characterisation: check the detectors' state around each
candidate and label it ``DQOK``, ``DQV`` or ``INJ``.

:func:`handle_superevent` (new superevents) and :func:`handle_external`
(new External events) schedule :func:`check_vectors` on the general queue
once the window has passed. The check reads the state vector, the DMT
data-quality vector (Virgo: the analysis state vector), the injection bits
and the iDQ glitch probabilities from the low-latency frames
(:obj:`~gwcelery.conf.llhoft_glob`), decides with the pure functions of
:mod:`gwcelery.detchar.vectors`, applies and removes labels, and writes one
log message with an HTML table of the bits. Frames that are missing, late
or unreadable make the state unknown: said in the log, no label, so the
alert is not blocked.

:func:`handle_preliminary` sends :func:`omegascan` (q-transform PNGs of
each detector's strain) once the preliminary alert went out.

:func:`write_mock_frames` is the frame writer of the local deployment
(Beat, every :obj:`~gwcelery.conf.mock_frames_interval` seconds); mock
events ask it for bad-state or injection segments through
:func:`request_bad_segment`.
"""

import json
import time

import numpy as np
import redis
from celery.utils.log import get_task_logger
from lal import GPSTimeNow

from .. import app
from ..detchar import frames, mockframes, scans, vectors
from ..external.coincidence import EXTERNAL_PIPELINES
from . import gracedb, lvalert

log = get_task_logger(__name__)

SUPEREVENT_NODES = ('superevent', 'test_superevent', 'mdc_superevent')
"""LVAlert nodes of new superevents."""

EXTERNAL_NODES = tuple(f'external_{pipeline.lower()}'
                       for pipeline in sorted(EXTERNAL_PIPELINES))
"""LVAlert nodes of new External events (``external_fermi``, ...)."""

LOG_TAGS = ['data_quality']
"""Tags of the check's log message."""

#: Seconds between two looks for frames that are late.
FRAME_POLL_INTERVAL = 0.5


def now_gps():
    """The current GPS time (float)."""
    return float(GPSTimeNow())


def _read_detector(conf, detector, channels, start, end):
    """The samples of `channels` of `detector` in ``[start, end)``, each
    ``None`` if unreadable; all ``None`` if the frames do not cover the
    window."""
    files = frames.covering_files(conf['llhoft_glob'], detector, start, end)
    if files is None:
        return {channel: None for channel in channels}
    return {channel: frames.read_channel(files, channel, start, end)
            for channel in channels}


def _wait_for_frames(conf, detectors, start, end):
    """Wait until the frames of `detectors` cover ``[start, end)``, at most
    until :obj:`~gwcelery.conf.detchar_frame_latency` seconds after `end`;
    return the detectors whose frames are still missing."""
    deadline = end + conf['detchar_frame_latency']
    if conf['task_always_eager']:
        # One process: waiting would stall every other task.
        deadline = 0
    while True:
        missing = [ifo for ifo in detectors if frames.covering_files(
            conf['llhoft_glob'], ifo, start, end) is None]
        if not missing or now_gps() >= deadline:
            return missing
        time.sleep(FRAME_POLL_INTERVAL)


def assess(conf, event, start, end, subject='superevent'):
    """Read the frames and decide, without writing anything.

    `start`/`end` is the span to check before padding. Returns a dict:
    ``bits`` (``IFO:NAME`` to True/False/None, every detector), ``active``
    detectors, ``missing`` (active detectors without frames), ``dq``,
    ``injection``, ``idq`` (channel to maximum or None), ``idq_state``,
    ``gated``, ``pipeline``, ``prepost``, ``window``, ``subject`` and the
    labels to ``add`` and ``remove``.
    """
    pipeline = event.get('pipeline') or ''
    gated = vectors.uses_gated_hoft(conf, pipeline)
    window = vectors.window(conf, pipeline, start, end)
    every = mockframes.detectors(conf)
    active = vectors.active_detectors(event, every)
    missing = _wait_for_frames(conf, active, *window)
    idq_channels = list(conf['idq_channels'])
    bits, idq = {}, {}
    for detector in every:
        pairs = vectors.channels_to_check(conf, [detector], gated)
        own_idq = [c for c in idq_channels
                   if vectors.detector_of(c) == detector]
        samples = _read_detector(conf, detector,
                                 [c for c, _ in pairs] + own_idq, *window)
        for channel, bitset in pairs:
            bits.update(vectors.bits_of(conf, channel, bitset,
                                        samples[channel]))
        for channel in own_idq:
            values = samples[channel]
            idq[channel] = (None if values is None or len(values) == 0
                            else float(np.max(values)))
    result = {
        'bits': bits, 'active': active, 'missing': missing,
        'dq': vectors.dq_state(bits, active),
        'injection': vectors.injection_state(bits, active),
        'idq': idq,
        'idq_state': vectors.idq_state(idq, conf['idq_pglitch_thresh']),
        'gated': gated, 'pipeline': pipeline,
        'prepost': vectors.prepost(conf, pipeline), 'window': list(window),
        'subject': subject,
    }
    result['add'], result['remove'] = vectors.decide_labels(
        conf, result['dq'], result['injection'], result['idq_state'],
        conf['idq_veto'])
    return result


@gracedb.task(shared=False)
def check_vectors(event, superevent_id, start, end):
    """Check the detectors' state for `event` over ``[start, end)`` padded
    by :obj:`~gwcelery.conf.check_vector_prepost`, label `superevent_id`
    (a superevent, or the External event itself) and log the result.

    Skipped, with a log message, if `start` is in the future (an early
    warning). Returns `event` with ``labels`` replaced by those of
    `superevent_id` as the check left them (the alert lifecycle reads
    ``DQV`` and ``INJ`` there).
    """
    conf = app.conf
    if start > now_gps():
        gracedb.upload(None, None, superevent_id,
                       'Skipping detchar checks because '
                       f'{superevent_id} is in the future.', tags=LOG_TAGS)
        return event
    subject = 'superevent' if superevent_id != event.get('graceid') \
        else 'event'
    result = assess(conf, event, start, end, subject)
    # Labels first: they are what the alerts wait for.
    labels = set(gracedb.get_labels(superevent_id))
    for label in result['add']:
        if label not in labels:
            gracedb.create_label(label, superevent_id)
    for label in result['remove']:
        if label in labels:
            gracedb.remove_label(label, superevent_id)
    gracedb.upload(None, None, superevent_id,
                   vectors.summary(conf, result), tags=LOG_TAGS)
    log.info('detchar: %s is %s (injection %s); +%s -%s', superevent_id,
             result['dq'], result['injection'], result['add'],
             [label for label in result['remove'] if label in labels])
    labels = (labels | set(result['add'])) - set(result['remove'])
    return dict(event, labels=sorted(labels))


def schedule_check(event, graceid, start, end):
    """Send :func:`check_vectors` to run when the padded window has ended
    (right away if it has)."""
    _, window_end = vectors.window(app.conf, event.get('pipeline'), start,
                                   end)
    countdown = max(0.0, window_end - now_gps())
    return check_vectors.apply_async((event, graceid, start, end),
                                     countdown=countdown)


@lvalert.handler(*SUPEREVENT_NODES, alert_types=('new',), shared=False,
                 ignore_result=True)
def handle_superevent(alert):
    """Check the data quality around a new superevent (its preferred
    event's detectors and pipeline, its ``t_start``/``t_end``)."""
    superevent = alert['object']
    schedule_check(superevent['preferred_event_data'],
                   superevent['superevent_id'], superevent['t_start'],
                   superevent['t_end'])


@lvalert.handler(*EXTERNAL_NODES, alert_types=('new',), shared=False,
                 ignore_result=True)
def handle_external(alert):
    """Check the data quality around a new External event (its burst, or
    the instant of a neutrino alert)."""
    event = alert['object']
    schedule_check(event, event['graceid'], *vectors.event_span(event))


# --- Omega scans ----------------------------------------------------------

def _strain(conf, detector, start, end):
    """`detector`'s strain over ``[start, end)`` (gwpy TimeSeries), or
    ``None`` if its frames do not cover it or cannot be read."""
    from gwpy.timeseries import TimeSeries

    files = frames.covering_files(conf['llhoft_glob'], detector, start, end)
    if files is None:
        return None
    try:
        return TimeSeries.read(files, conf['strain_channel_names'][detector],
                               start=start, end=end, format='gwf')
    except (OSError, RuntimeError, ValueError, IndexError):
        return None


@gracedb.task(shared=False, ignore_result=True, queue='openmp',
              priority=9)
def omegascan(t0, graceid):
    """Upload an omega scan (``{IFO}_omegascan.png``) of each detector of
    :obj:`~gwcelery.conf.strain_channel_names` around `t0`, or a figure
    saying why it failed. Low priority on the ``openmp`` queue: it runs
    after every waiting BAYESTAR."""
    conf = app.conf
    durations = conf['omegascan_durations']
    dpi = conf['omegascan_dpi']
    for detector, channel in sorted(conf['strain_channel_names'].items()):
        strain = _strain(conf, detector, *scans.data_span(t0, durations))
        try:
            if strain is None:
                raise ValueError('no readable frames')
            png = scans.scan_png(strain, t0, durations,
                                 f'Omegascans of {channel} at {t0}', dpi)
        except (ValueError, IndexError, FloatingPointError) as exc:
            png = scans.failure_png(
                f'Failed to create {detector} omegascan: {exc}', dpi)
        gracedb.upload(png, f'{detector}_omegascan.png', graceid,
                       f'{detector} omegascan', tags=LOG_TAGS)


def is_frozen_label(alert):
    """Whether a ``label_added`` alert is
    :obj:`~gwcelery.conf.superevent_frozen_label` (the preliminary alert
    went out)."""
    return alert['data'].get('name') == app.conf['superevent_frozen_label']


@lvalert.handler(*SUPEREVENT_NODES, alert_types=('label_added',),
                 when=is_frozen_label, shared=False, ignore_result=True)
def handle_preliminary(alert):
    """Schedule the omega scans of a superevent once its preliminary alert
    went out (:func:`is_frozen_label`) and its frames can be on disk."""
    superevent = alert['object']
    t0 = superevent['t_0']
    _, end = scans.data_span(t0, app.conf['omegascan_durations'])
    countdown = max(0.0, end + app.conf['detchar_frame_latency']
                    - now_gps())
    omegascan.apply_async((t0, superevent['superevent_id']),
                          countdown=countdown)


# --- Mock frames of the local deployment ---------------------------------

def _redis():
    return redis.Redis.from_url(app.conf.broker_url)


def request_bad_segment(kind, start, end):
    """Ask the mock frame writer to write `kind` (``'dqv'`` or ``'inj'``)
    data over ``[start, end)`` (GPS) in every detector."""
    client = _redis()
    try:
        client.rpush(app.conf['mock_frames_segments_key'], json.dumps(
            {'kind': kind, 'start': start, 'end': end}))
    finally:
        client.close()


def _bad_segments(now):
    """The requested bad segments, forgetting those long past."""
    key = app.conf['mock_frames_segments_key']
    client = _redis()
    try:
        segments = []
        for item in client.lrange(key, 0, -1):
            segment = json.loads(item)
            if segment['end'] < now - app.conf['mock_frames_history']:
                client.lrem(key, 1, item)
            else:
                segments.append(segment)
    finally:
        client.close()
    return segments


def mock_event_bad_data():
    """Whether the next mock event comes with bad data: ``'dqv'``,
    ``'inj'`` or ``None``, from a count of the mock events kept in Redis
    (see :func:`gwcelery.detchar.mockframes.bad_data_kind`)."""
    fraction = app.conf['mock_events_bad_data_fraction']
    if not fraction or not app.conf['mock_frames_interval']:
        return None
    client = _redis()
    try:
        number = client.incr(app.conf['mock_frames_segments_key'] + ':count')
    finally:
        client.close()
    return mockframes.bad_data_kind(number, fraction)


@app.task(shared=False, ignore_result=True, expires=10)
def write_mock_frames():
    """Write the missing mock frames up to now and delete those older than
    :obj:`~gwcelery.conf.mock_frames_history` seconds."""
    conf = app.conf
    now = now_gps()
    mockframes.write_frames(conf, now, conf['mock_frames_duration'],
                            conf['mock_frames_history'], _bad_segments(now))
    mockframes.prune_frames(conf, now, conf['mock_frames_history'])


@app.on_after_finalize.connect
def _schedule(sender, **kwargs):
    interval = sender.conf['mock_frames_interval']
    if interval:
        sender.add_periodic_task(interval, write_mock_frames.s(),
                                 name='write mock frames')
