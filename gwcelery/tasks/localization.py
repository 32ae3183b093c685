"""Localisation of CBC events: BAYESTAR from the upload that completes its
input, straight from the LVAlert listener to the ``openmp`` queue.

BAYESTAR needs the candidate (``coinc.xml``) and the detectors' noise
PSDs. The O4 searches put the PSDs inside ``coinc.xml``; O3-style uploads
carry them in a separate ``psd.xml.gz`` uploaded right after. The rule
(:func:`localizes`): the event's creation (its ``new`` alert) localises
if ``coinc.xml`` has PSDs; the ``psd.xml.gz`` upload localises only if it
does not. Each event is thus localised once, from whichever upload
completes its input, and ligo.skymap's reader reads the PSDs in both
cases (:func:`gwcelery.tasks.bayestar.read_event`).

:func:`localize` is the LVAlert handler of both alerts, on the openmp
queue itself: it reads its input from GraceDB, so that nothing stands
between the upload and BAYESTAR but the listener (no task on the general
queue, no file through the broker, ``coinc.xml`` parsed once). The order
of the localisations that wait is :mod:`~.localization_order`'s. The sky
map is then uploaded and the event labelled SKYMAP_READY
(:func:`publish_skymap`, in the same task unless GraceDB fails, then in
a task of its own that retries); a failure is written to the logs of the event
and of its superevent (:func:`report_failure`).
"""

from celery.utils.log import get_task_logger

from .. import app
from . import bayestar, gracedb, localization_order, lvalert, superevents

log = get_task_logger(__name__)

CBC_NODES = tuple(f'{prefix}_{pipeline}'
                  for pipeline, group_name
                  in superevents.PIPELINE_GROUPS.items()
                  if group_name == 'CBC' for prefix in ('cbc', 'test'))
"""LVAlert nodes of the CBC searches (production/MDC and Test)."""


def is_candidate(event):
    """Whether an event can become part of an alert: it has a FAR below
    the superevent manager's threshold (others are never in a
    superevent, so their products would be wasted)."""
    far = event.get('far')
    return far is not None and far <= app.conf.superevent_far_threshold


def localizes(trigger, coinc_has_psds):
    """Whether ``trigger`` (``'coinc'``: the event's creation; ``'psd'``:
    a ``psd.xml.gz`` upload) starts BAYESTAR for an event whose
    ``coinc.xml`` has (or lacks) PSDs. Exactly one of the two does."""
    return coinc_has_psds if trigger == 'coinc' else not coinc_has_psds


def trigger_of(alert):
    """The localisation trigger that a CBC event's alert is (``'coinc'``,
    ``'psd'``), or ``None``."""
    if alert['alert_type'] == 'new':
        return 'coinc'
    if (alert['alert_type'] == 'log' and (alert.get('data') or {}).get(
            'filename') == bayestar.PSD_FILENAME):
        return 'psd'
    return None


def may_complete_input(alert):
    """Whether the alert is a trigger (:func:`trigger_of`) of a candidate
    (:func:`is_candidate`)."""
    return (trigger_of(alert) is not None
            and is_candidate(alert['object']))


def read_input(graceid, trigger):
    """Read the event's ``coinc.xml`` (and ``psd.xml.gz`` if it has no
    PSDs) from GraceDB; return the event to localise
    (:func:`gwcelery.tasks.bayestar.read_event`), or ``None`` if the
    other trigger localises it (a ``coinc.xml`` without PSDs is told by
    its bytes, without parsing it)."""
    coinc_bytes = gracedb.download(bayestar.COINC_FILENAME, graceid)
    doc = None
    if trigger == 'psd' or bayestar.may_have_psds(coinc_bytes):
        doc = bayestar.read_ligolw(coinc_bytes)
    has_psds = doc is not None and bayestar.has_psds(doc)
    if not localizes(trigger, has_psds):
        if has_psds:
            log.info('%s: coinc.xml has its own PSDs and was localised '
                     'from them: %s ignored', graceid, bayestar.PSD_FILENAME)
        else:
            log.info('%s: coinc.xml has no PSDs: localising on %s',
                     graceid, bayestar.PSD_FILENAME)
        return None
    psd_bytes = (None if has_psds
                 else gracedb.download(bayestar.PSD_FILENAME, graceid))
    return bayestar.read_event(doc, psd_bytes)


@gracedb.task(*CBC_NODES, via=lvalert.handler, alert_types=('new', 'log'),
              when=may_complete_input, bind=True, queue='openmp',
              shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True)
def localize(self, alert):
    """Localise a CBC event on the upload that completes BAYESTAR's input
    (:func:`may_complete_input`, :func:`read_input`), in the order of
    :mod:`~.localization_order` (:func:`~.localization_order.should_wait`
    sends it back behind the alerts' localisations), then
    :func:`publish_skymap`. A failure is reported
    (:func:`report_failure`); GraceDB being unreachable is retried (the
    publication alone once BAYESTAR ran)."""
    graceid = alert['object']['graceid']
    if localization_order.should_wait(self, graceid):
        raise self.retry(countdown=0,
                         priority=localization_order.RECORD_PRIORITY)
    try:
        event = read_input(graceid, trigger_of(alert))
        if event is None:
            return
        skymap = bayestar.localize_event(event, graceid)
    except gracedb.GraceDbUnavailable:
        raise
    except Exception as exc:
        report_failure(graceid, f'{self.name}: {type(exc).__name__}: {exc}')
        raise
    try:
        # Inline: the sky map goes out without a hop, and without its
        # bytes going through the broker.
        publish_skymap(skymap, graceid)
    except gracedb.GraceDbUnavailable as exc:
        # Not BAYESTAR again: a task of its own retries the publication.
        log.warning('%s: publishing the sky map failed (%s): retrying in '
                    'a task of its own', graceid, exc)
        publish_skymap.si(skymap, graceid, earlier_try=True).on_error(
            localization_failed.s(graceid)).delay()


@gracedb.task(shared=False, ignore_result=True)
def publish_skymap(skymap, graceid, earlier_try=False):
    """Upload the sky map to the event, then label it SKYMAP_READY. A
    retry, or a call after an ``earlier_try``, does not upload twice
    (:func:`gwcelery.tasks.gracedb.upload`)."""
    gracedb.upload(skymap, bayestar.SKYMAP_FILENAME, graceid,
                   'Sky localization complete (BAYESTAR)',
                   ['sky_loc', 'public'], earlier_try=earlier_try)
    gracedb.create_label('SKYMAP_READY', graceid)


def report_failure(graceid, why):
    """Write that the localisation of ``graceid`` failed (``why``) to its
    log and, if it is in one, to its superevent's (an alert then goes out
    without this sky map, see
    :func:`gwcelery.tasks.orchestrator.fallback_preliminary`)."""
    message = f'Sky localization of {graceid} failed in {why}'
    log.error('%s', message)
    gracedb.upload.delay(None, None, graceid, message, ['sky_loc'])
    (gracedb.get_event.si(graceid) | log_on_superevent.s(message)).delay()


@app.task(shared=False, ignore_result=True)
def localization_failed(request, exc, traceback, graceid):
    """Error callback of :func:`publish_skymap`: :func:`report_failure`."""
    report_failure(graceid, f'{request.task}: {type(exc).__name__}: {exc}')


@app.task(shared=False, ignore_result=True)
def log_on_superevent(event, message):
    """Write ``message`` to the log of the superevent of ``event`` (if
    it is in one yet)."""
    superevent_id = event.get('superevent')
    if superevent_id:
        gracedb.upload.delay(None, None, superevent_id, message,
                             ['sky_loc'])
