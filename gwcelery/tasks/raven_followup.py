"""What follows a RAVEN coincidence (:mod:`gwcelery.tasks.raven`).

* The coincidence is computed again when a sky map arrives later on
  either side, so that the space-time FAR and the combined sky map
  (:mod:`gwcelery.tasks.combined_skymaps`) follow: the preferred event of
  a coincident superevent gets its sky map (``SKYMAP_READY``,
  :func:`handle_gw_skymap`), or a coincident external event gets a sky
  map from elsewhere than its own notice (:func:`handle_external_skymap`;
  the sky map of a notice is followed by the search in the same canvas,
  :func:`gwcelery.tasks.external_triggers.follow_up`). The superevent's
  own sky map uploads are :func:`gwcelery.tasks.raven.handle_superevent`'s.
* ``RAVEN_ALERT`` makes a sub-threshold superevent eligible for a public
  alert: once it also has ``EM_READY``, its preliminary alert goes out
  (:func:`handle_raven_alert`,
  :func:`gwcelery.tasks.lifecycle_plan.plan_raven_preliminary`), and its
  notices carry the coincidence (:func:`gwcelery.tasks.alerts.register`).
"""

import uuid

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from ..external import coincidence
from . import (
    alerts,
    external_skymaps,
    gracedb,
    lifecycle,
    lifecycle_plan,
    lvalert,
    orchestrator,
    raven,
    raven_rules,
    superevents,
)

log = get_task_logger(__name__)

EXTERNAL_NODES = tuple(f'external_{pipeline.lower()}'
                       for pipeline in sorted(coincidence.EXTERNAL_PIPELINES))
"""LVAlert nodes of the external events."""


# --- decisions (pure) -----------------------------------------------------


def rerun_after_gw_skymap(graceid, superevent):
    """Whether the sky map of event `graceid` calls for the coincidence
    search of its `superevent` (``None`` if it is in none) again: it is
    coincident and `graceid` is its preferred event."""
    return (superevent is not None
            and raven_rules.EM_COINC in superevent['labels']
            and superevent['preferred_event'] == graceid)


def rerun_after_external_log(event, entry):
    """Whether log entry `entry` of an external event calls for its
    coincidence search again: a sky map, other than the one made from the
    event's own notice, uploaded to a coincident event."""
    return (raven_rules.EM_COINC in (event.get('labels') or ())
            and raven_rules.NOT_GRB not in (event.get('labels') or ())
            and raven_rules.is_skymap_log(entry)
            and entry.get('filename') != external_skymaps.skymap_filename(
                event['pipeline']))


# --- tasks ----------------------------------------------------------------


@gracedb.task(*superevents.NODES, via=lvalert.handler,
              alert_types=('label_added',),
              when=lvalert.label_is('SKYMAP_READY'), queue='exttrig',
              shared=False)
def handle_gw_skymap(alert):
    """SKYMAP_READY on a GW event: the coincidence search of its
    superevent again if :func:`rerun_after_gw_skymap`."""
    event = alert['object']
    graceid = event['graceid']
    superevent_id = event.get('superevent')
    superevent = (gracedb.get_superevent(superevent_id) if superevent_id
                  else None)
    if rerun_after_gw_skymap(graceid, superevent):
        log.info('RAVEN: sky map of %s, preferred event of %s: coincidence '
                 'search again', graceid, superevent_id)
        raven.coincidence_search(superevent_id, log_none=False)


@lvalert.handler(*EXTERNAL_NODES, alert_types=('log',), queue='exttrig',
                 shared=False, ignore_result=True)
def handle_external_skymap(alert):
    """A sky map uploaded to a coincident external event: its coincidence
    search again if :func:`rerun_after_external_log`."""
    event = alert['object']
    if rerun_after_external_log(event, alert['data']):
        log.info('RAVEN: new sky map %s of %s: coincidence search again',
                 alert['data']['filename'], event['graceid'])
        raven.coincidence_search.delay(event['graceid'], log_none=False)


def is_raven_alert_label(alert):
    """Whether a ``label_added`` alert is RAVEN_ALERT, or EM_READY on a
    superevent labelled RAVEN_ALERT."""
    label = alert['data'].get('name')
    return label == raven_rules.RAVEN_ALERT or (
        label == app.conf.superevent_em_ready_label
        and raven_rules.RAVEN_ALERT in (alert['object'].get('labels') or ()))


@lvalert.handler(*lifecycle.SUPEREVENT_NODES, alert_types=('label_added',),
                 when=is_raven_alert_label, shared=False, ignore_result=True)
def handle_raven_alert(alert):
    """RAVEN_ALERT or EM_READY on a superevent
    (:func:`is_raven_alert_label`): its preliminary alert if
    :func:`gwcelery.tasks.lifecycle_plan.plan_raven_preliminary` says so."""
    superevent_id = alert['object']['superevent_id']
    chain(group(gracedb.get_superevent.si(superevent_id),
                gracedb.get_log.si(superevent_id)),
          decide_raven_preliminary.s()).delay()


@app.task(shared=False, ignore_result=True)
def decide_raven_preliminary(state):
    """Given ``[superevent, log entries]``, start the preliminary alert
    that RAVEN_ALERT calls for, once (the two labels' alerts may both get
    here)."""
    superevent, log_entries = state
    superevent_id = superevent['superevent_id']
    why_not = lifecycle_plan.plan_raven_preliminary(
        superevent, lifecycle.notices_sent(log_entries))
    if why_not is not None:
        log.info('%s: no RAVEN preliminary alert: %s', superevent_id,
                 why_not)
        return
    if not alerts.claim(superevent_id, 'RavenPreliminary', uuid.uuid4().hex):
        log.info('%s: RAVEN preliminary alert already started',
                 superevent_id)
        return
    log.info('%s: RAVEN_ALERT: sending the preliminary alert of a '
             'sub-threshold candidate', superevent_id)
    gracedb.upload.delay(
        None, None, superevent_id,
        f'RAVEN_ALERT: the coincidence with {superevent["em_type"]} makes '
        'this candidate eligible for a public alert', ['ext_coinc'])
    orchestrator.preliminary_alert(superevent).delay()
