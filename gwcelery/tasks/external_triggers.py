"""External triggers: GCN notices of gamma-ray bursts (Fermi GBM, Swift BAT,
INTEGRAL, AGILE MCAL) and supernova neutrinos (SNEWS) become External events
in GraceDB.

:func:`handle` receives every notice of these types on the serial
``exttrig`` queue. It records the first notice of a trigger as a new event
and later notices of the same trigger as replacements of its data; a
notice identical to the recorded one, or older than it, changes nothing.
Then, as a canvas, a sky map of the error circle is made and uploaded and
the RAVEN coincidence search (:mod:`gwcelery.tasks.raven`) runs.

The rules of the reference pipeline decide what is recorded and how
(:func:`gwcelery.external.notices.reason_to_drop` and
:attr:`~gwcelery.external.notices.ExternalNotice.not_grb_reason`): a
low-reliability Fermi GBM sub-threshold candidate is dropped with a log
line saying why; test packets (VOEvent role ``test``) become events of the
group Test; triggers that are not taken for GRBs (Fermi GBM's
classification, a ``Def_NOT_a_GRB`` retraction, Swift's lost star tracker
lock, the first unclassified Fermi GBM alert) are recorded with the label
``NOT_GRB`` and left out of the coincidence search.
"""

import requests
from celery import chain
from celery.utils.log import get_task_logger

from .. import app
from ..external import notices
from . import external_skymaps, gcn, gracedb, raven, raven_rules

log = get_task_logger(__name__)

NOT_GRB = raven_rules.NOT_GRB
"""Label of an external event whose instrument says it is not a GRB."""

EVENT_FILENAME = 'initial.data'
"""Name under which GraceDB keeps the notice of an external event (the
first upload and every replacement)."""

NOTICE_TYPES = tuple(gcn.NoticeType(notice_type)
                     for notice_type in notices.PIPELINE_AND_SEARCH)
"""The GCN notice types that :func:`handle` receives."""


def describe(notice):
    """A short name of the notice's trigger for log lines."""
    return f'{notice.pipeline} {notice.search} trigger {notice.trigger_id}'


def event_query(notice):
    """GraceDB query for the External event of the notice's trigger."""
    return (f'group: {notice.group} pipeline: {notice.pipeline} '
            f'search: {notice.search} '
            f'grbevent.trigger_id = "{notice.trigger_id}"')


def _parse_or_none(payload, max_error_radius):
    try:
        return notices.parse(payload, max_error_radius)
    except notices.NoticeError:
        return None


def _sync_not_grb_label(graceid, labels, not_grb):
    if not_grb and NOT_GRB not in labels:
        gracedb.create_label(NOT_GRB, graceid)
    elif not not_grb and NOT_GRB in labels:
        gracedb.remove_label(NOT_GRB, graceid)


def replace_if_newer(event, notice, payload):
    """Replace the recorded notice of `event` with `payload` (as
    :func:`~gwcelery.external.notices.recorded_payload` gives it) if it
    differs and is not older; return whether it was replaced."""
    graceid = event['graceid']
    try:
        recorded = gracedb.download(EVENT_FILENAME, graceid)
    except requests.HTTPError as e:
        log.warning('%s: cannot read the notice recorded in %s (%s); '
                    'replacing it', describe(notice), graceid, e)
        recorded = None
    if recorded == payload:
        log.info('%s: identical notice %s already recorded in %s; nothing '
                 'to do', describe(notice), notice.ivorn, graceid)
        return False
    previous = None if recorded is None else _parse_or_none(
        recorded, app.conf['external_skymap_max_error_radius'])
    if previous is not None and notice.date < previous.date:
        log.info('%s: notice %s of %s is older than the one recorded in %s '
                 '(%s); ignored', describe(notice), notice.ivorn,
                 notice.date, graceid, previous.date)
        return False
    gracedb.replace_event(graceid, payload)
    _sync_not_grb_label(graceid, event.get('labels', ()), notice.not_grb)
    log.info('%s: replaced the notice of %s with %s', describe(notice),
             graceid, notice.ivorn)
    return True


def follow_up(graceid, notice):
    """The canvas that runs after an event was created or replaced: sky map
    (when the notice has a position), then the coincidence search (unless
    the trigger is not a GRB). ``None`` when there is nothing to do."""
    steps = []
    if notice.has_position:
        shape = (f'a disk of radius {notice.error_radius:g} deg around'
                 if notice.error_radius else 'the one pixel of')
        message = (f'Sky map of the {notice.pipeline} error circle: {shape} '
                   f'RA {notice.ra:g} deg, Dec {notice.dec:g} deg')
        steps += [
            external_skymaps.create_disk_skymap.si(
                notice.ra, notice.dec, notice.error_radius, notice.gpstime,
                graceid),
            gracedb.upload.s(
                external_skymaps.skymap_filename(notice.pipeline), graceid,
                message, tags=['sky_loc'])]
    if not notice.not_grb:
        steps.append(raven.coincidence_search.si(graceid))
    return chain(*steps) if steps else None


@gracedb.task(*NOTICE_TYPES, via=gcn.handler, queue='exttrig',
              shared=False, acks_late=True, reject_on_worker_lost=True)
def handle(payload):
    """Record a GCN notice of an external trigger in GraceDB.

    Creates the External event (group External, or Test for a test
    packet; pipeline Fermi, Swift, INTEGRAL, AGILE or SNEWS; search GRB,
    SubGRB, Supernova or MDC) with the notice as its file, or replaces the
    data of the event of the same trigger, then launches :func:`follow_up`.
    Returns the event's graceid, or ``None`` for a notice that is rejected
    (malformed) or dropped (see
    :func:`~gwcelery.external.notices.reason_to_drop`).
    """
    try:
        notice = notices.parse(
            payload, app.conf['external_skymap_max_error_radius'])
    except notices.NoticeError as e:
        log.error('Rejected a GCN notice (%d bytes): %s', len(payload), e)
        return None
    reason = notices.reason_to_drop(notice)
    if reason is not None:
        log.info('%s: notice %s dropped, not recorded in GraceDB: %s',
                 describe(notice), notice.ivorn, reason)
        return None
    payload = notices.recorded_payload(payload, notice)
    if notice.not_grb:
        log.info('%s is not taken for a GRB (%s): labelled %s and left out '
                 'of the coincidence search', describe(notice),
                 notice.not_grb_reason, NOT_GRB)

    events = gracedb.get_events(event_query(notice))
    if events:
        event = min(events, key=lambda e: int(e['graceid'][1:]))
        if len(events) > 1:
            log.warning('%s has %d events in GraceDB (%s); updating the '
                        'first', describe(notice), len(events),
                        ', '.join(e['graceid'] for e in events))
        graceid = event['graceid']
        if not replace_if_newer(event, notice, payload):
            return graceid
    else:
        event = gracedb.create_event(
            payload, notice.search, notice.pipeline, notice.group,
            labels=[NOT_GRB] if notice.not_grb else [],
            filename=EVENT_FILENAME)
        graceid = event['graceid']
        log.info('%s: created %s from notice %s', describe(notice), graceid,
                 notice.ivorn)

    canvas = follow_up(graceid, notice)
    if canvas is not None:
        canvas.delay()
    return graceid
