"""Carrying out the console's actions with the pipeline's own tasks.

Each action writes the operator's line to the superevent's log, starts
the pipeline's task (:func:`start`), then waits for its outcome
(:func:`wait`): the task's result where the task keeps one, then the line
that tells in the superevent's GraceDB log
(:func:`gwcelery.console.actions.find_outcome`), polled until
:obj:`~gwcelery.conf.console_action_timeout`. The console itself never
writes to GraceDB: every write is one of the pipeline's tasks.

The notice tasks keep no result that names their notice, so the outcome
is the first one in the log after the action started. For that to be
this action's own, :func:`carry_out` lets one console action at a time
run on a superevent (a lock in the broker's Redis, held from the start
until the outcome is found): a second action waits, then reads the log
after the first's outcome.
"""

import contextlib
import dataclasses
import logging
import time

import redis
from celery import chain, group

from .. import app
from ..tasks import (
    first2years,
    gracedb,
    lifecycle,
    orchestrator,
    raven_rules,
)
from . import actions

log = logging.getLogger(__name__)

#: Seconds between two reads of the superevent's log while waiting.
POLL_INTERVAL = 0.5

#: Seconds that a console lock outlives its action's time-out, so that a
#: lock whose console died is freed, but not one still in use.
LOCK_MARGIN = 60

#: Seconds after the mock GW signal at which a mock joint GRB comes (as
#: GRB 170817A came 1.7 s after GW170817).
JOINT_GRB_DELAY = 1.7


@dataclasses.dataclass
class Result:
    """What the console shows after an action: the task id, the outcome
    (``done``, ``refused``, ``failed`` or ``timed out``), a message and
    the GraceDB log entry that tells."""

    action: str
    task_id: str
    state: str
    message: str
    entry: dict | None = None
    graceid: str | None = None


def _note(superevent_id, action, user, details):
    """Write the operator's line to the superevent's log (a task)."""
    gracedb.upload.delay(
        None, None, superevent_id,
        actions.operator_message(action, user, details), ['em_follow'])
    log.info('%s: %s asked for %s (%s)', superevent_id, user, action,
             details)


def start(action, superevent, user, **form):
    """Start ``action`` for ``superevent`` (a dict, as GraceDB gives it)
    with the checked ``form`` values; return the Celery result of the
    pipeline task that was started."""
    superevent_id = superevent['superevent_id']
    if action == 'preliminary':
        _note(superevent_id, 'a preliminary notice', user,
              f'preferred event {superevent["preferred_event"]}')
        return orchestrator.preliminary_alert(superevent).delay()
    if action == 'preferred':
        graceid = form['graceid']
        event = gracedb.get_event(graceid)
        _note(superevent_id, 'a new preferred event', user,
              f'{superevent["preferred_event"]} -> {graceid}')
        return gracedb.update_superevent.delay(
            superevent_id, preferred_event=graceid, t_0=event['gpstime'])
    if action == 'update':
        names = [form.get(key) or None
                 for key in ('skymap', 'em_bright', 'p_astro')]
        _note(superevent_id, 'an Update notice', user,
              ', '.join(name or 'latest' for name in names))
        return lifecycle.update_alert.delay(superevent_id, *names)
    if action == 'retraction':
        _note(superevent_id, 'a Retraction notice', user, 'confirmed')
        return chain(group(gracedb.get_superevent.si(superevent_id),
                           gracedb.get_log.si(superevent_id)),
                     lifecycle.decide_signoff.s(
                         app.conf.advocate_no_label)).delay()
    if action == 'raven':
        external_id = form['external_id']
        _note(superevent_id, raven_rules.RAVEN_ALERT, user,
              f'with {external_id}')
        return group(gracedb.create_label.si(raven_rules.RAVEN_ALERT, graceid)
                     for graceid in (superevent_id, external_id)).delay()
    raise ValueError(f'unknown action {action!r}')


def _task_id(result):
    return getattr(result, 'id', None) or str(result)


def _task_failure(result, timeout):
    """The error of a task that keeps its result, or ``None`` (also for
    tasks that keep none)."""
    try:
        if getattr(result, 'ignored', False):
            return None
        result.get(timeout=timeout, propagate=True)
    except Exception as exc:  # noqa: BLE001 (shown to the operator)
        return f'{type(exc).__name__}: {exc}'
    return None


def wait(action, superevent_id, result, after, timeout=None,
         argument=None):
    """Wait for the outcome of ``action`` started as ``result``: log
    entries numbered above ``after`` are looked at. Returns a
    :class:`Result`."""
    if timeout is None:
        timeout = app.conf.console_action_timeout
    deadline = time.monotonic() + timeout
    task_id = _task_id(result)
    if action in ('preferred', 'raven'):
        # These tasks keep their results: a failure shows at once.
        failure = _task_failure(result, timeout)
        if failure is not None:
            return Result(action, task_id, 'failed', failure)
    while True:
        outcome = actions.find_outcome(
            action, gracedb.get_log(superevent_id), after, argument)
        if outcome is not None:
            return Result(action, task_id, outcome.state, outcome.message,
                          outcome.entry)
        if time.monotonic() >= deadline:
            return Result(action, task_id, 'timed out',
                          f'no outcome in the GraceDB log within '
                          f'{timeout:g} s: the task may still be running')
        time.sleep(POLL_INTERVAL)


@contextlib.contextmanager
def one_at_a_time(superevent_id, timeout):
    """Hold the superevent's console lock while in the ``with`` block;
    yields whether it was had within ``timeout`` seconds."""
    client = redis.Redis.from_url(app.conf.broker_url)
    lock = client.lock(f'gwcelery:console:busy:{superevent_id}',
                       timeout=timeout + LOCK_MARGIN,
                       blocking_timeout=timeout, sleep=0.1)
    held = lock.acquire()
    try:
        yield held
    finally:
        if held:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning('%s: the console lock expired before its '
                            'action ended', superevent_id)
        client.close()


def carry_out(action, superevent_id, user, timeout=None, argument=None,
              started=None, **form):
    """Start ``action`` on the superevent and wait for its outcome, one
    console action per superevent at a time; ``started`` (if given) is
    called with the task id once the task is started. Returns a
    :class:`Result`."""
    if timeout is None:
        timeout = app.conf.console_action_timeout
    with one_at_a_time(superevent_id, timeout) as held:
        if not held:
            return Result(action, '', 'refused',
                          f'another console action on {superevent_id} '
                          f'kept it busy for {timeout:g} s; nothing was '
                          'started: reload the page and try again')
        # Read under the lock: what an earlier action changed is seen,
        # and its outcome is not taken for this one's.
        superevent = gracedb.get_superevent(superevent_id)
        after = actions.last_number(gracedb.get_log(superevent_id))
        result = start(action, superevent, user, **form)
        if started is not None:
            started(_task_id(result))
        return wait(action, superevent_id, result, after, timeout,
                    argument)


def inject(kind, user, timeout=None, started=None):
    """Upload a mock CBC event (``kind`` ``'event'``) or a mock joint
    GW-GRB event (``'joint'``) with the local deployment's injectors,
    and wait until its events are in GraceDB (``started``, if given, is
    called with the task id first). Returns a :class:`Result` whose
    ``graceid`` is one of the new events."""
    if timeout is None:
        timeout = app.conf.console_action_timeout
    gpstime = first2years.now_gps() - 1.0
    log.info('%s asked for a mock %s at GPS %.3f', user, kind, gpstime)
    if kind == 'joint':
        first2years.upload_mdc_grb.delay(gpstime + JOINT_GRB_DELAY)
    result = first2years.upload_event.delay(gpstime=gpstime)
    if started is not None:
        started(_task_id(result))
    query = f'search: MDC gpstime: {gpstime - 1:.3f} .. {gpstime + 3:.3f}'
    wanted = {'CBC', 'External'} if kind == 'joint' else {'CBC'}
    deadline = time.monotonic() + timeout
    while True:
        events = gracedb.get_events(query)
        if wanted <= {event['group'] for event in events}:
            ids = ', '.join(sorted(event['graceid'] for event in events))
            return Result('inject', _task_id(result), 'done',
                          f'mock {kind} uploaded: {ids}',
                          graceid=events[0]['graceid'])
        if time.monotonic() >= deadline:
            return Result('inject', _task_id(result), 'timed out',
                          f'no mock events in GraceDB within {timeout:g} s')
        time.sleep(POLL_INTERVAL)
