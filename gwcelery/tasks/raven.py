"""RAVEN: the coincidence search between external triggers and GW
superevents.

:func:`coincidence_search` runs from either side: for a new superevent it
looks for External events (GRBs, supernova neutrinos) in the coincidence
windows, for a new or updated External event it looks for superevents. Each
match is handled by the canvas of :func:`coincidence_canvas`: fetch both
objects and their sky maps, compute the coincidence FARs
(:mod:`gwcelery.external.coincidence`), then :func:`record_coincidence`
links the external event to the superevent, writes the FARs, labels
``EM_COINC`` (and ``RAVEN_ALERT`` when significant), logs on both and,
with both sky maps, makes the combined sky map
(:mod:`gwcelery.tasks.combined_skymaps`). :func:`alert_coincidence` is
what the public alerts say about it. The search runs again when a sky map
arrives later (:mod:`gwcelery.tasks.raven_followup`). The labels, queries
and FAR comparisons, without I/O, are :mod:`gwcelery.tasks.raven_rules`.
"""

import json

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from ..external import coincidence
from . import (
    combined_skymaps,
    external_skymaps,
    gracedb,
    lvalert,
)
from .raven_rules import (
    COINCIDENCE_FAR_FILENAME,
    EM_COINC,
    LOG_TAGS,
    NOT_GRB,
    RAVEN_ALERT,
    combined_far,
    external_events_query,
    far_message,
    gw_group,
    is_candidate_external,
    is_skymap_log,
    is_superevent,
    same_far,
    superevents_query,
    wants_combined_skymap,
)
from .superevent_rules import event_category

log = get_task_logger(__name__)


def _find_external_events(superevent):
    conf = app.conf
    t_0 = superevent['t_0']
    analysis = gw_group(superevent)
    lo, hi = coincidence.external_search_span(conf, analysis)
    category = superevent['category']
    events = gracedb.get_events(
        external_events_query(category, t_0 + lo, t_0 + hi))
    return [(superevent['superevent_id'], event['graceid'],
             coincidence.window(conf, event['search'], analysis))
            for event in events
            if is_candidate_external(event, category)
            and coincidence.in_window(conf, event['search'], analysis, t_0,
                                      event['gpstime'])]


def _find_superevents(event):
    conf = app.conf
    t_ext = event['gpstime']
    lo, hi = coincidence.superevent_search_span(conf, event['search'])
    category = event_category(event)
    found = gracedb.get_superevents(
        superevents_query(category, t_ext + lo, t_ext + hi))
    matches = []
    for superevent in found:
        analysis = gw_group(superevent)
        if coincidence.in_window(conf, event['search'], analysis,
                                 superevent['t_0'], t_ext):
            matches.append((superevent['superevent_id'], event['graceid'],
                            coincidence.window(conf, event['search'],
                                               analysis)))
    return matches


@gracedb.task(queue='exttrig', shared=False)
def coincidence_search(graceid, log_none=True):
    """Search the other side for coincidences with a superevent or an
    External event, and launch :func:`coincidence_canvas` for each match.

    With `log_none`, a search that finds nothing says so in the GraceDB log
    of `graceid`. Returns the matches as ``[superevent_id, graceid]``
    pairs.
    """
    if is_superevent(graceid):
        matches = _find_external_events(gracedb.get_superevent(graceid))
        other_side = 'external triggers'
    else:
        event = gracedb.get_event(graceid)
        if NOT_GRB in event.get('labels', ()):
            log.info('%s is labelled %s: no coincidence search', graceid,
                     NOT_GRB)
            return []
        matches = _find_superevents(event)
        other_side = 'superevents'
    if not matches:
        log.info('RAVEN: no %s coincident with %s', other_side, graceid)
        if log_none:
            gracedb.upload(None, None, graceid,
                           f'RAVEN: no {other_side} in the coincidence '
                           f'windows of {graceid}', tags=LOG_TAGS)
    for superevent_id, ext_id, (start, end) in matches:
        log.info('RAVEN: %s and %s coincide (window [%+g, %+g] s)',
                 superevent_id, ext_id, start, end)
        coincidence_canvas(superevent_id, ext_id, start, end).delay()
    return [[superevent_id, ext_id] for superevent_id, ext_id, _ in matches]


def coincidence_canvas(superevent_id, ext_id, start, end):
    """The work on one coincidence: fetch, compute, record."""
    return chain(
        group(gracedb.get_superevent.si(superevent_id),
              gracedb.get_event.si(ext_id),
              get_skymap.si(superevent_id),
              get_skymap.si(ext_id)),
        calculate_coincidence_far.s(start, end),
        record_coincidence.s(superevent_id, ext_id))


def _latest_skymap_file(graceid):
    entries = [entry for entry in gracedb.get_log(graceid)
               if is_skymap_log(entry)]
    if not entries:
        return None
    latest = max(entries, key=lambda entry: entry['N'])
    return f"{latest['filename']},{latest['file_version']}"


@gracedb.task(shared=False)
def get_skymap(graceid):
    """The latest sky map (FITS bytes) in the log of an event or superevent
    (a FITS file tagged ``sky_loc``), or ``None``. A superevent without one
    falls back to its preferred event's."""
    filename = _latest_skymap_file(graceid)
    if filename is None and is_superevent(graceid):
        graceid = gracedb.get_superevent(graceid)['preferred_event']
        filename = _latest_skymap_file(graceid)
    if filename is None:
        return None
    return gracedb.download(filename, graceid)


@app.task(shared=False)
def calculate_coincidence_far(objects, start, end):
    """Compute the coincidence FARs of a superevent and an external event.

    `objects` is ``[superevent, external_event, gw_skymap, ext_skymap]``
    (sky maps as FITS bytes or ``None``); ``[start, end]`` is the window.
    Returns the JSON-ready result: the temporal FAR (``None`` when the GW
    FAR is unknown), and the sky map overlap and space-time FAR when both
    sky maps exist.
    """
    superevent, ext_event, gw_skymap, ext_skymap = objects
    rate = coincidence.external_rate(app.conf, ext_event['search'])
    result = {
        'superevent_id': superevent['superevent_id'],
        'preferred_event': superevent['preferred_event'],
        'external_event': ext_event['graceid'],
        'gw_far': superevent['far'],
        'external_rate': rate,
        'window': [start, end],
        'temporal_coinc_far': None,
        'skymap_overlap': None,
        'spatiotemporal_coinc_far': None,
    }
    if superevent['far'] is None:
        return result
    time_far = coincidence.temporal_far(superevent['far'], rate, start, end)
    result['temporal_coinc_far'] = time_far
    if gw_skymap is not None and ext_skymap is not None:
        try:
            overlap = external_skymaps.overlap_integral(gw_skymap, ext_skymap)
        except (OSError, KeyError, ValueError) as e:
            log.warning('Sky map overlap of %s and %s failed: %s',
                        superevent['superevent_id'], ext_event['graceid'], e)
        else:
            result['skymap_overlap'] = overlap
            result['spatiotemporal_coinc_far'] = coincidence.spacetime_far(
                time_far, overlap)
    return result


def _link(superevent_id, ext_event):
    """Add the external event to the superevent; whether it is new."""
    member_of = ext_event.get('superevent')
    if member_of == superevent_id:
        return False
    if member_of:
        log.info('%s already belongs to %s: not added to %s',
                 ext_event['graceid'], member_of, superevent_id)
        return False
    gracedb.add_event_to_superevent(superevent_id, ext_event['graceid'])
    return True


def _ensure_label(label, graceid, labels):
    if label not in labels:
        gracedb.create_label(label, graceid)


@gracedb.task(queue='exttrig', shared=False)
def record_coincidence(result, superevent_id, ext_id):
    """Record a coincidence in GraceDB.

    Adds the external event to the superevent, writes ``em_type`` and the
    FARs on the superevent when this is its most significant coincidence,
    labels both ``EM_COINC`` (and ``RAVEN_ALERT``, the preferred event
    too, when the combined FAR times the trials factor passes the
    threshold), logs the result on both, and makes the combined sky map
    when :func:`~gwcelery.tasks.raven_rules.wants_combined_skymap`. A
    repeated computation that changes nothing writes nothing.
    """
    superevent = gracedb.get_superevent(superevent_id)
    ext_event = gracedb.get_event(ext_id)
    time_far = result['temporal_coinc_far']
    space_far = result['spatiotemporal_coinc_far']
    combined = combined_far(time_far, space_far)

    new_link = _link(superevent_id, ext_event)
    best = combined_far(superevent['time_coinc_far'],
                        superevent['space_coinc_far'])
    most_significant = (superevent['em_type'] in (None, ext_id)
                        or best is None
                        or (combined is not None and combined < best))
    changed = new_link
    if most_significant and not (
            superevent['em_type'] == ext_id
            and same_far(superevent['time_coinc_far'], time_far)
            and same_far(superevent['space_coinc_far'], space_far)):
        gracedb.update_superevent(superevent_id, em_type=ext_id,
                                  time_coinc_far=time_far,
                                  space_coinc_far=space_far)
        changed = True

    _ensure_label(EM_COINC, superevent_id, superevent['labels'])
    _ensure_label(EM_COINC, ext_id, ext_event['labels'])
    analysis = gw_group(superevent)
    if (combined is not None
            and NOT_GRB not in ext_event['labels']
            and coincidence.passes_alert_threshold(app.conf, combined,
                                                   analysis)):
        # The superevent's label last: it is what starts the alert.
        preferred = superevent['preferred_event_data']
        _ensure_label(RAVEN_ALERT, ext_id, ext_event['labels'])
        _ensure_label(RAVEN_ALERT, preferred['graceid'],
                      preferred.get('labels') or ())
        _ensure_label(RAVEN_ALERT, superevent_id, superevent['labels'])

    if wants_combined_skymap(changed, most_significant, space_far):
        combined_skymaps.make_combined_skymap(
            superevent_id, ext_id, get_skymap.si(superevent_id),
            get_skymap.si(ext_id)).delay()

    if changed:
        start, end = result['window']
        message = far_message(result)
        gracedb.upload(
            json.dumps(result, indent=2).encode(), COINCIDENCE_FAR_FILENAME,
            superevent_id,
            f"RAVEN: {ext_event['pipeline']} {ext_event['search']} event "
            f"{ext_id} coincides (window [{start:+g}, {end:+g}] s): "
            f"{message}", tags=LOG_TAGS)
        gracedb.upload(
            None, None, ext_id,
            f'RAVEN: coincides with superevent {superevent_id} (window '
            f'[{start:+g}, {end:+g}] s): {message}', tags=LOG_TAGS)
    log.info('RAVEN: %s and %s: %s', superevent_id, ext_id,
             far_message(result))
    return result


def calls_for_search(alert):
    """Whether a superevent's alert calls for the coincidence search: a
    new superevent, or a coincident one (label ``EM_COINC``) that changed
    (its preferred event, hence its FAR) or got a sky map."""
    alert_type = alert['alert_type']
    if alert_type == 'new':
        return True
    coincident = EM_COINC in (alert.get('object') or {}).get('labels', ())
    return coincident and (alert_type == 'update' or (
        alert_type == 'log' and is_skymap_log(alert['data'])))


@gracedb.task('superevent', 'test_superevent', 'mdc_superevent',
              via=lvalert.handler, alert_types=('new', 'update', 'log'),
              when=calls_for_search, queue='exttrig', shared=False)
def handle_superevent(alert):
    """Run the coincidence search when the superevent's alert calls for it
    (:func:`calls_for_search`); again (without logging a miss) for a
    coincident one."""
    coincidence_search(alert['uid'],
                       log_none=alert['alert_type'] == 'new')


@gracedb.task(shared=False)
def alert_coincidence(superevent_id):
    """The external coincidence that a public alert of the superevent
    carries (:func:`gwcelery.external.coincidence.alert_coincidence`,
    with the versioned name of the latest combined sky map), or ``None``
    without ``RAVEN_ALERT``."""
    superevent = gracedb.get_superevent(superevent_id)
    if RAVEN_ALERT not in superevent['labels'] or not superevent['em_type']:
        return None
    ext_event = gracedb.get_event(superevent['em_type'])
    combined = None
    if combined_skymaps.COMBINEDSKYMAP_READY in superevent['labels']:
        for entry in gracedb.get_log(superevent_id):
            if entry.get('filename') == \
                    combined_skymaps.COMBINED_SKYMAP_FILENAME:
                combined = f"{entry['filename']},{entry['file_version']}"
    return coincidence.alert_coincidence(superevent, ext_event, combined)
