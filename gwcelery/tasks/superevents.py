"""The superevent manager: cluster the candidates of all searches into
superevents.

Several online searches upload a candidate for the same signal within
seconds of each other. :func:`handle` puts each candidate (event) into the
superevent of its category whose time window overlaps the event's own
window, or creates a new superevent for it, and keeps the best event of
every superevent as its preferred event.

The decisions are pure functions of event and superevent dicts, in
:mod:`gwcelery.tasks.superevent_rules`. :func:`handle` only gets the
candidate superevents (from GraceDB, or from the alert itself when
:class:`Journal` can vouch for it), decides with
:func:`~gwcelery.tasks.superevent_rules.plan` and sends the differences
back (:func:`apply`), so running it twice for the same alert changes
nothing the second time.
"""

import collections
import datetime
import time

from celery.utils.log import get_task_logger

from .. import app
from . import gracedb, lvalert
from .superevent_rules import (
    PIPELINE_GROUPS,
    event_category,
    event_window,
    is_complete,
    plan,
    required_labels,
    superevent_category,
)

log = get_task_logger(__name__)

NODES = tuple(f'{prefix}_{pipeline}'
              for pipeline, group in PIPELINE_GROUPS.items()
              for prefix in (group.lower(), 'test'))
"""LVAlert nodes of every search: production and MDC events of a pipeline
are published on ``<group>_<pipeline>``, Test events on
``test_<pipeline>``."""


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
    """Carry out a decision of
    :func:`~gwcelery.tasks.superevent_rules.plan` in GraceDB."""
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
