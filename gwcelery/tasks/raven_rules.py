"""RAVEN's rules, without tasks or I/O: its labels and log conventions,
the GraceDB queries of :func:`gwcelery.tasks.raven.coincidence_search`
and which of the events they find it considers, and what
:func:`gwcelery.tasks.raven.record_coincidence` decides from the FARs it
computed."""

import re

from ..external import coincidence
from .superevent_rules import analysis_group, event_category

EM_COINC = 'EM_COINC'
"""Label of a superevent and an external event that coincide."""

RAVEN_ALERT = 'RAVEN_ALERT'
"""Label of a coincidence whose combined FAR passes the alert threshold."""

NOT_GRB = 'NOT_GRB'
"""Label of external events that are not GRBs according to their instrument
(see :mod:`gwcelery.tasks.external_triggers`): left out of the search."""

LOG_TAGS = ['ext_coinc']
"""Tags of RAVEN's log messages."""

COINCIDENCE_FAR_FILENAME = 'coincidence_far.json'
"""File with the FAR computation, uploaded to the superevent."""

_SUPEREVENT_ID = re.compile(r'(T|M)?S\d{6}[a-z]+')


def is_superevent(graceid):
    """Whether `graceid` names a superevent (rather than an event)."""
    return _SUPEREVENT_ID.fullmatch(graceid) is not None


def gw_group(superevent):
    """``'CBC'`` or ``'Burst'``: the analysis group of a superevent's
    preferred event (:func:`gwcelery.tasks.superevent_rules.analysis_group`);
    CBC when its pipeline is unknown."""
    return analysis_group(superevent['preferred_event_data']) or 'CBC'


def is_candidate_external(event, category):
    """Whether an event found by the query is an external trigger that the
    search considers for a superevent of `category`."""
    return (event.get('pipeline') in coincidence.EXTERNAL_PIPELINES
            and event_category(event) == category
            and NOT_GRB not in event.get('labels', ()))


def _interval(lo, hi):
    return f'{lo:.6f} .. {hi:.6f}'


def external_events_query(category, lo, hi):
    """GraceDB query for candidate external events of a superevent
    category with GPS times in ``[lo, hi]``."""
    if category == 'Test':
        return f'group: Test gpstime: {_interval(lo, hi)}'
    if category == 'MDC':
        return f'group: External search: MDC gpstime: {_interval(lo, hi)}'
    return f'group: External gpstime: {_interval(lo, hi)}'


def superevents_query(category, lo, hi):
    """GraceDB query for superevents of `category` with ``t_0`` in
    ``[lo, hi]``."""
    return f'category: {category} t_0: {_interval(lo, hi)}'


def is_skymap_log(entry):
    """Whether a log entry uploads a sky map (a FITS file tagged
    ``sky_loc``)."""
    filename = entry.get('filename') or ''
    return ('sky_loc' in (entry.get('tag_names') or ())
            and filename.endswith(('.fits', '.fits.gz')))


def combined_far(time_far, space_far):
    """The FAR that ranks a coincidence: the space-time FAR when both sky
    maps exist, else the temporal one (``None`` if the GW FAR is
    unknown)."""
    return space_far if space_far is not None else time_far


def same_far(a, b):
    """Whether two FARs (or ``None``) agree up to rounding, so that a
    repeated computation counts as no change."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def wants_combined_skymap(changed, most_significant, space_far):
    """Whether a recorded coincidence calls for a (new) combined sky map:
    both sky maps exist (a space-time FAR), the external event is the
    superevent's most significant coincidence, and the FARs (so the sky
    maps) or the link changed since the last computation."""
    return changed and most_significant and space_far is not None


def far_message(result):
    """The log line's account of a coincidence FAR computation
    (:func:`gwcelery.tasks.raven.calculate_coincidence_far`)."""
    parts = []
    if result['temporal_coinc_far'] is None:
        parts.append('the GW FAR is unknown, so no coincidence FAR')
    else:
        parts.append(f"temporal coincidence FAR "
                     f"{result['temporal_coinc_far']:.3e} Hz")
    if result['spatiotemporal_coinc_far'] is not None:
        parts.append(f"space-time coincidence FAR "
                     f"{result['spatiotemporal_coinc_far']:.3e} Hz "
                     f"(sky map overlap {result['skymap_overlap']:.3g})")
    elif result['skymap_overlap'] is not None:
        parts.append('the sky maps do not overlap')
    return ', '.join(parts)
