"""EarlyWarning notices: pre-merger candidates of the early-warning
searches (``search: EarlyWarning``).

As soon as such an event's sky map is ready (its SKYMAP_READY label), an
event that passes :func:`passes_early_warning_threshold` and is in a
superevent gets an EarlyWarning notice describing it: its sky map is
copied to the superevent, then the notice goes out unless the superevent
already had its preliminary notice or an automatic notice is blocked
(:func:`gwcelery.tasks.lifecycle_plan.automatic_alert_blocked`). The
superevent's later notices (preliminary, Initial, ...) follow as usual
with the next serial numbers.
"""

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from . import (
    alerts,
    bayestar,
    gracedb,
    lifecycle,
    lifecycle_plan,
    lvalert,
    superevents,
)

log = get_task_logger(__name__)

#: The search of the early-warning pipelines' events.
EARLY_WARNING_SEARCH = 'EarlyWarning'


def passes_early_warning_threshold(event):
    """Whether an event may get an EarlyWarning notice: from an
    early-warning search, online, not an injection, and its FAR times
    :obj:`~gwcelery.conf.early_warning_alert_trials_factor` at most
    :obj:`~gwcelery.conf.early_warning_alert_far_threshold`."""
    far = event.get('far')
    return (event.get('search') == EARLY_WARNING_SEARCH
            and far is not None and not event.get('offline')
            and app.conf.injection_label not in (event.get('labels') or ())
            and far * app.conf.early_warning_alert_trials_factor
            <= app.conf.early_warning_alert_far_threshold)


def early_warning_blocked(labels, sent):
    """Why an EarlyWarning notice may not go out for a superevent with
    these labels and notices sent (see
    :func:`gwcelery.tasks.lifecycle.notices_sent`), or ``None``."""
    if 'Preliminary' in sent:
        return 'its preliminary notice already went out'
    return lifecycle_plan.automatic_alert_blocked(labels, sent)


def is_early_warning_skymap(alert):
    """Whether a ``label_added`` alert is SKYMAP_READY on an event that
    passes :func:`passes_early_warning_threshold`."""
    return (alert['data'].get('name') == 'SKYMAP_READY'
            and passes_early_warning_threshold(alert['object']))


@lvalert.handler(*superevents.NODES, alert_types=('label_added',),
                 when=is_early_warning_skymap, shared=False,
                 ignore_result=True)
def handle_event(alert):
    """SKYMAP_READY on an early-warning event that passes the threshold
    (:func:`is_early_warning_skymap`): :func:`copy_skymap`, then the
    notice."""
    event = alert['object']
    graceid = event['graceid']
    chain(group(gracedb.get_event.si(graceid),
                gracedb.download.si(bayestar.SKYMAP_FILENAME, graceid)),
          copy_skymap.s()).delay()


@app.task(shared=False, ignore_result=True)
def copy_skymap(state):
    """Given ``[event, its sky map]``, copy the sky map to the event's
    superevent, then :func:`send_early_warning`."""
    event, skymap = state
    superevent_id = event.get('superevent')
    if not superevent_id:
        log.warning('%s: early-warning event in no superevent yet: no '
                    'EarlyWarning notice', event['graceid'])
        return
    chain(gracedb.upload.si(skymap, bayestar.SKYMAP_FILENAME, superevent_id,
                            f'Sky map copied from {event["graceid"]}',
                            ['sky_loc', 'public']),
          send_early_warning.s(event)).delay()


@app.task(shared=False, ignore_result=True)
def send_early_warning(skymap_log, event):
    """Read the superevent's labels and log, then :func:`decide`."""
    superevent_id = event['superevent']
    skymap_filename = f'{skymap_log["filename"]},{skymap_log["file_version"]}'
    chain(group(gracedb.get_labels.si(superevent_id),
                gracedb.get_log.si(superevent_id)),
          decide.s(event, skymap_filename)).delay()


@app.task(shared=False, ignore_result=True)
def decide(state, event, skymap_filename):
    """Given the superevent's ``[labels, log entries]``, send the
    EarlyWarning notice of ``event`` with its sky map unless
    :func:`early_warning_blocked` says no."""
    labels, log_entries = state
    superevent_id = event['superevent']
    why_not = early_warning_blocked(labels,
                                    lifecycle.notices_sent(log_entries))
    if why_not is not None:
        lifecycle.refuse(superevent_id, f'No EarlyWarning notice for '
               f'{event["graceid"]}, because {why_not}')
        return
    # The notice describes the early-warning event, whichever event is
    # preferred at this moment.
    superevent = {'superevent_id': superevent_id, 'labels': labels,
                  'preferred_event_data': event}
    alerts.register.delay(superevent, 'EarlyWarning', skymap_filename,
                          followups=[alerts.circular_canvas(
                              superevent, 'EarlyWarning', skymap_filename)])
