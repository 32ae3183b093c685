"""The superevent manager: cluster the candidates of all searches into
superevents.

Several online searches upload a candidate for the same signal within
seconds of each other. :func:`handle` puts each candidate (event) into the
superevent of its category whose time window overlaps the event's own
window, or creates a new superevent for it, and keeps the best event of
every superevent as its preferred event.

The decisions are pure functions of event and superevent dicts (the shapes
GraceDB returns): :func:`event_window`, :func:`event_category`,
:func:`ranking_key`, :func:`overlapping_superevent`, :func:`plan_update`,
and :func:`plan` which combines them. :func:`handle` only gets the
candidate superevents (from GraceDB, or from the alert itself when
:class:`Journal` can vouch for it), applies :func:`plan` and sends the
differences back (:func:`apply`), so running it twice for the same alert
changes nothing the second time.
"""

import collections
import datetime
import math
import time

from celery.utils.log import get_task_logger

from .. import app
from . import gracedb, lvalert

log = get_task_logger(__name__)

PIPELINE_GROUPS = {
    'gstlal': 'CBC', 'pycbc': 'CBC', 'mbta': 'CBC', 'mbtaonline': 'CBC',
    'spiir': 'CBC', 'cwb': 'Burst', 'olib': 'Burst'}
"""Analysis group of each search pipeline (lowercase name). Events of the
Test group carry ``Test`` as their group, so their analysis group comes
from their pipeline."""

GROUP_RANK = {'CBC': 1, 'Burst': 0}
"""Preference between analysis groups when choosing the preferred event."""

NODES = tuple(f'{prefix}_{pipeline}'
              for pipeline, group in PIPELINE_GROUPS.items()
              for prefix in (group.lower(), 'test'))
"""LVAlert nodes of every search: production and MDC events of a pipeline
are published on ``<group>_<pipeline>``, Test events on
``test_<pipeline>``."""

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


def candidate_superevents(event):
    """Fetch the superevents that ``event`` may belong to: its own if it is
    already in one, otherwise those of its category whose ``t_0`` is near
    its ``gpstime`` (one GraceDB request either way)."""
    superevent_id = event.get('superevent')
    if superevent_id:
        return [gracedb.get_superevent(superevent_id)]
    start, end = _query_range(event)
    return gracedb.get_superevents(
        f'category: {event_category(event)} t_0: {start!r} .. {end!r}')


def _query_range(event):
    gpstime = event['gpstime']
    return (gpstime - app.conf.superevent_query_d_t_start,
            gpstime + app.conf.superevent_query_d_t_end)


NEIGHBOURS_HALF_WIDTH = 100.0
"""GraceDB puts in an event's ``superevent_neighbours`` the superevents of
its category whose ``t_0`` is within this many seconds of its
``gpstime``."""


class Journal:
    """The superevents that this process changed, as it left them.

    A ``new`` alert carries ``superevent_neighbours``: the superevents near
    the event when it was created. The superevent worker is the only
    writer of superevent windows, members and preferred events, so that
    snapshot, brought up to date with the superevents this process changed
    since (:meth:`candidates`), can stand in for a query: one GraceDB
    request fewer. Labels that others add meanwhile are not seen, so a
    change of preferred event is decided on a fresh query instead (see
    :func:`handle`).

    A process that just started does not know what its predecessor
    changed, so it trusts no snapshot until it sees (:meth:`saw`) an alert
    of an event created after its start (by more than
    :attr:`clock_margin`), or one that shows one of its own changes: that
    alert, and every alert after it, was made after anything the
    predecessor did.
    """

    #: Seconds by which an event's creation must follow the start of this
    #: process for its snapshot to be trusted: GraceDB gives creation
    #: times to the second, and its clock may be a little off ours.
    clock_margin = 2.0

    def __init__(self, size=200):
        self.size = size
        self.superevents = collections.OrderedDict()
        self.warm = False
        self.started = None
        self.unconfirmed = collections.deque(maxlen=size)

    @staticmethod
    def _state(superevent):
        return {'t_0': superevent['t_0'], 't_start': superevent['t_start'],
                't_end': superevent['t_end'],
                'preferred_event': superevent['preferred_event'],
                'gw_events': frozenset(superevent['gw_events'])}

    def record(self, superevent, changed):
        """Remember a superevent as this process left it (``changed``:
        whether the process has just changed it)."""
        superevent_id = superevent['superevent_id']
        self.superevents.pop(superevent_id, None)
        self.superevents[superevent_id] = superevent
        if len(self.superevents) > self.size:
            self.superevents.popitem(last=False)
        if changed and not self.warm:
            self.unconfirmed.append((superevent_id, self._state(superevent)))

    def forget(self):
        """Forget everything, as if the process had just started."""
        self.superevents.clear()
        self.unconfirmed.clear()
        self.warm = False
        self.started = time.time()

    def saw(self, alert):
        """Take note of an alert received by the handler."""
        if self.warm:
            return
        if self.started is None:
            # The first task of this process (not the import, which a
            # prefork parent does before forking each of its children).
            self.started = time.time()
        created = _creation_time(alert['object'])
        if (created is not None
                and created >= self.started + self.clock_margin):
            self.warm = True
            self.unconfirmed.clear()
            return
        neighbours = alert['object'].get('superevent_neighbours') or {}
        if any(superevent_id in neighbours
               and self._state(neighbours[superevent_id]) == state
               for superevent_id, state in self.unconfirmed):
            self.warm = True
            self.unconfirmed.clear()

    def candidates(self, event):
        """Return the candidate superevents of a new event: its alert's
        ``superevent_neighbours`` with this process's later changes; or
        None if they cannot be trusted."""
        neighbours = event.get('superevent_neighbours')
        if (not self.warm or neighbours is None or max(
                app.conf.superevent_query_d_t_start,
                app.conf.superevent_query_d_t_end) > NEIGHBOURS_HALF_WIDTH):
            return None
        start, end = _query_range(event)
        category = event_category(event)
        candidates = dict(neighbours)
        for superevent_id, superevent in self.superevents.items():
            if event['graceid'] in superevent['gw_events']:
                return None  # handled already: a redelivered alert
            if (superevent_category(superevent_id) == category
                    and start <= superevent['t_0'] <= end):
                candidates[superevent_id] = superevent
            else:  # its t_0 has moved away since the snapshot
                candidates.pop(superevent_id, None)
        return [superevent for superevent in candidates.values()
                if start <= superevent['t_0'] <= end]


def _creation_time(obj):
    """Unix time of GraceDB's ``created`` field of an object (``None`` if
    missing or unreadable)."""
    try:
        return datetime.datetime.strptime(
            obj['created'], '%Y-%m-%d %H:%M:%S %Z').replace(
                tzinfo=datetime.timezone.utc).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


_journal = Journal()


def process(event, superevents):
    """Put ``event`` into its superevent, given the candidate superevents,
    and bring the superevent up to date: window, preferred event, ``t_0``
    and the :obj:`~gwcelery.conf.superevent_em_ready_label` label.

    Only the differences are sent to GraceDB, so processing the same event
    twice creates and changes nothing the second time.
    """
    apply(event, *plan(event, superevents))


def apply(event, superevent, joining, changes, preferred):
    """Carry out a decision of :func:`plan` in GraceDB."""
    try:
        _apply(event, superevent, joining, changes, preferred)
    except BaseException:
        # Some of the changes may have been made: the journal no longer
        # knows the superevent as GraceDB has it.
        _journal.forget()
        raise


def _apply(event, superevent, joining, changes, preferred):
    graceid = event['graceid']
    if superevent is None:
        t_0, t_start, t_end = event_window(event)
        superevent = gracedb.create_superevent(graceid, t_0, t_start, t_end)
        log.info('%s: created superevent %s', graceid,
                 superevent['superevent_id'])
    else:
        superevent_id = superevent['superevent_id']
        if joining and 'preferred_event' not in changes:
            # Setting the preferred event also adds it: one request fewer.
            gracedb.add_event_to_superevent(superevent_id, graceid)
        if changes:
            gracedb.update_superevent(superevent_id, **changes)
        log.info('%s: %s superevent %s%s', graceid,
                 'added to' if joining else 'already in', superevent_id,
                 f', updated {changes}' if changes else '')
        preferred_data = {key: value for key, value in preferred.items()
                          if key != 'superevent_neighbours'}  # alerts only
        superevent = {
            **superevent, **changes, 'preferred_event_data': preferred_data,
            'gw_events': [*superevent['gw_events'],
                          *([graceid] if joining else [])]}
    em_ready = app.conf.superevent_em_ready_label
    if is_complete(preferred) and em_ready not in superevent['labels']:
        gracedb.create_label(em_ready, superevent['superevent_id'])
        log.info('%s: preferred event %s is complete, labelled %s',
                 superevent['superevent_id'], preferred['graceid'], em_ready)
        superevent = {**superevent,
                      'labels': [*superevent['labels'], em_ready]}
    _journal.record(superevent, changed=joining or bool(changes))


@gracedb.task(*NODES, via=lvalert.handler,
              alert_types=('new', 'label_added'), queue='superevent',
              shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True, bind=True)
def handle(self, alert):
    """Handle an LVAlert message of a search pipeline's node.

    Acts on ``new`` events, and on ``label_added`` when the label makes the
    event complete (the preferred event may then change, and the superevent
    become ``EM_READY``); ignores every other alert, and events with no FAR
    or a FAR above :obj:`~gwcelery.conf.superevent_far_threshold`. Runs on
    the serial ``superevent`` queue so that two uploads never race. The
    message is acknowledged only once handled, and the whole task is
    retried with backoff while GraceDB is unreachable: running it again is
    harmless (see :func:`process`).
    """
    _journal.saw(alert)
    event = alert['object']
    graceid = event['graceid']
    alert_type = alert['alert_type']
    if alert_type == 'label_added':
        if (alert['data']['name'] not in required_labels(event)
                or not is_complete(event)):
            return
    elif alert_type != 'new':
        return
    far = event.get('far')
    if far is None:
        log.info('%s: no FAR, not put in a superevent', graceid)
        return
    if far > app.conf.superevent_far_threshold:
        log.info('%s: FAR %g Hz above threshold, not put in a superevent',
                 graceid, far)
        return
    decision = None
    if alert_type == 'new' and not self.request.retries:
        candidates = _journal.candidates(event)
        if candidates is not None:
            decision = plan(event, candidates)
            if 'preferred_event' in decision[2]:
                # A new preferred event depends on labels (completeness,
                # frozen) that others may have changed since the alert.
                decision = None
    if decision is None:
        decision = plan(event, candidate_superevents(event))
    apply(event, *decision)
