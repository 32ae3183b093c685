"""The superevent manager's decisions, without tasks or I/O: pure
functions of event and superevent dicts (the shapes GraceDB returns).

The vocabularies of searches, analysis groups and categories
(:data:`PIPELINE_GROUPS`, :data:`GROUP_RANK`, :data:`CATEGORY_PREFIXES`);
an event's window (:func:`event_window`) and category
(:func:`event_category`); its completeness (:func:`is_complete`) and rank
as preferred event (:func:`ranking_key`); and what it does to the
candidate superevents (:func:`overlapping_superevent`,
:func:`plan_update`, and :func:`plan` which combines them).
:mod:`gwcelery.tasks.superevents` gets the candidates, decides with
:func:`plan` and sends the differences to GraceDB.
"""

import math

from .. import app

PIPELINE_GROUPS = {
    'gstlal': 'CBC', 'pycbc': 'CBC', 'mbta': 'CBC', 'mbtaonline': 'CBC',
    'spiir': 'CBC', 'cwb': 'Burst', 'olib': 'Burst'}
"""Analysis group of each search pipeline (lowercase name). Events of the
Test group carry ``Test`` as their group, so their analysis group comes
from their pipeline."""

GROUP_RANK = {'CBC': 1, 'Burst': 0}
"""Preference between analysis groups when choosing the preferred event."""

CATEGORY_PREFIXES = {'Production': 'S', 'Test': 'TS', 'MDC': 'MS'}
"""Prefix of the superevent ids of each category."""


def event_category(event):
    """Return the superevent category of an event: ``'Test'`` for the Test
    group, ``'MDC'`` for the MDC search, ``'Production'`` otherwise."""
    if event['group'] == 'Test':
        return 'Test'
    if event.get('search') == 'MDC':
        return 'MDC'
    return 'Production'


def superevent_category(superevent_id):
    """Return the category of a superevent from its id (``S…``, ``TS…``,
    ``MS…``)."""
    for category, prefix in CATEGORY_PREFIXES.items():
        if superevent_id.startswith(prefix):
            return category
    raise ValueError(f'not a superevent id: {superevent_id!r}')


def analysis_group(event):
    """Return ``'CBC'`` or ``'Burst'`` (or None for an unknown pipeline)."""
    if event['group'] in GROUP_RANK:
        return event['group']
    return PIPELINE_GROUPS.get(event['pipeline'].lower())


def _event_duration(event):
    """The duration a burst search gives its event, in seconds, or None:
    cWB's ``duration``, oLIB's quality over frequency."""
    attributes = event.get('extra_attributes') or {}
    pipeline = event['pipeline'].lower()
    if pipeline == 'cwb':
        duration = attributes.get('MultiBurst', {}).get('duration')
    elif pipeline == 'olib':
        lib = attributes.get('LalInferenceBurst', {})
        quality, frequency = lib.get('quality_mean'), lib.get('frequency_mean')
        duration = quality / frequency if quality and frequency else None
    else:
        duration = None
    return duration if duration and duration > 0 else None


def event_window(event):
    """Return ``(t_0, t_start, t_end)`` of an event's superevent window.

    ``t_0`` is the event's ``gpstime``. The window reaches
    :obj:`~gwcelery.conf.superevent_d_t_start` before and
    :obj:`~gwcelery.conf.superevent_d_t_end` after it for the pipelines
    listed there (the CBC searches), the event's own duration on either
    side for cWB and oLIB, and the default widths otherwise.
    """
    conf = app.conf
    pipeline = event['pipeline'].lower()
    duration = _event_duration(event)
    d_t_start = conf.superevent_d_t_start.get(
        pipeline, duration or conf.superevent_default_d_t_start)
    d_t_end = conf.superevent_d_t_end.get(
        pipeline, duration or conf.superevent_default_d_t_end)
    t_0 = event['gpstime']
    return t_0, t_0 - d_t_start, t_0 + d_t_end


def required_labels(event):
    """Return the labels that make this event complete
    (:obj:`~gwcelery.conf.superevent_required_labels`)."""
    table = app.conf.superevent_required_labels
    labels = table.get(event['pipeline'].lower(),
                       table.get(analysis_group(event), ()))
    return frozenset(labels)


def is_complete(event):
    """Whether the event has every label its data products need."""
    return required_labels(event) <= set(event.get('labels') or ())


def passes_public_threshold(event):
    """Whether the event could be sent as a public alert: online, not an
    injection, and FAR times its group's trials factor at most the group's
    threshold."""
    group = analysis_group(event)
    threshold = app.conf.preferred_event_far_threshold.get(group)
    trials_factor = app.conf.preferred_event_trials_factor.get(group, 1)
    far = event.get('far')
    return (threshold is not None and far is not None
            and not event.get('offline')
            and 'INJ' not in (event.get('labels') or ())
            and far * trials_factor <= threshold)


def _detector_count(event):
    return len([ifo for ifo in (event.get('instruments') or '').split(',')
                if ifo.strip()])


def _snr(event):
    """Network SNR of a CBC event: the coinc's, or else the quadrature sum
    of the single-detector SNRs."""
    attributes = event.get('extra_attributes') or {}
    snr = attributes.get('CoincInspiral', {}).get('snr')
    if snr is None:
        snr = math.hypot(*(single.get('snr') or 0
                           for single in attributes.get('SingleInspiral', ())))
    return snr


def ranking_key(event):
    """Sort key of the candidates for preferred event: the largest wins.

    Compared in order: the event is complete (:func:`is_complete`); it
    passes the public-alert threshold (:func:`passes_public_threshold`);
    its analysis group (CBC over Burst); its number of detectors; its
    network SNR for CBC, or its lower FAR for Burst.
    """
    group = analysis_group(event)
    if group == 'CBC':
        significance = _snr(event)
    else:
        far = event.get('far')
        significance = -math.inf if far is None else -far
    return (is_complete(event), passes_public_threshold(event),
            GROUP_RANK.get(group, -1), _detector_count(event), significance)


def member_superevent(superevents, graceid):
    """Return the superevent among ``superevents`` that already contains
    the event ``graceid``, or None."""
    return next((superevent for superevent in superevents
                 if graceid in superevent['gw_events']), None)


def overlapping_superevent(superevents, category, t_start, t_end):
    """Return the superevent of ``category`` whose window overlaps
    ``[t_start, t_end]`` (windows that touch overlap), the one with the
    earliest ``t_0`` if there are several, or None."""
    overlapping = [
        superevent for superevent in superevents
        if superevent_category(superevent['superevent_id']) == category
        and superevent['t_start'] <= t_end and t_start <= superevent['t_end']]
    return min(overlapping, key=lambda superevent: superevent['t_0'],
               default=None)


def plan_update(superevent, event):
    """Return how a superevent changes when ``event`` joins it (or
    changes while in it).

    Returns ``(changes, preferred)``: ``changes`` holds the superevent
    fields to update (``t_start`` and ``t_end`` when the event's window
    reaches outside the superevent's, which never shrinks;
    ``preferred_event`` and ``t_0`` when the event outranks the preferred
    event and the superevent is not frozen), ``preferred`` is the preferred
    event afterwards.
    """
    t_0, t_start, t_end = event_window(event)
    changes = {}
    if t_start < superevent['t_start']:
        changes['t_start'] = t_start
    if t_end > superevent['t_end']:
        changes['t_end'] = t_end
    preferred = superevent['preferred_event_data']
    if preferred['graceid'] == event['graceid']:
        preferred = event  # the alert's copy is the newer one
    elif (app.conf.superevent_frozen_label not in superevent['labels']
          and ranking_key(event) > ranking_key(preferred)):
        changes.update(preferred_event=event['graceid'], t_0=t_0)
        preferred = event
    return changes, preferred


def plan(event, superevents):
    """Decide what ``event`` does, given the candidate superevents.

    Returns ``(superevent, joining, changes, preferred)``: the superevent
    that the event is already in or joins, or None if a new one is to be
    made with the event's window and the event as preferred event; whether
    the event joins it now; the fields of the superevent to update
    (:func:`plan_update`); and the preferred event afterwards.
    """
    superevent = member_superevent(superevents, event['graceid'])
    joining = superevent is None
    if joining:
        _, t_start, t_end = event_window(event)
        superevent = overlapping_superevent(
            superevents, event_category(event), t_start, t_end)
        if superevent is None:
            return None, True, {}, event
    changes, preferred = plan_update(superevent, event)
    return superevent, joining, changes, preferred
