"""The life of a superevent's public alerts after its preliminary notice.

The decisions are pure functions of what GraceDB holds (the superevent's
labels and log), like :func:`gwcelery.tasks.superevent_rules.plan`. Most are
:mod:`gwcelery.tasks.lifecycle_plan`: whether an automatic notice may go
out (:func:`~gwcelery.tasks.lifecycle_plan.automatic_alert_blocked`),
what a sign-off calls for
(:func:`~gwcelery.tasks.lifecycle_plan.plan_signoff`), whether an Update
may go out (:func:`~gwcelery.tasks.lifecycle_plan.plan_update`) and with
which products (:func:`~gwcelery.tasks.lifecycle_plan.latest_products`).
Those that read the notices that :mod:`gwcelery.tasks.alerts` recorded
are here: which notices went out (:func:`notices_sent`) and whether a sky
map brings an automatic Update (:func:`plan_automatic_update`). The tasks
read GraceDB, decide, and start the writes:

* ``ADVOK`` (an advocate's ``ADV`` signoff with status OK): the
  **Initial** notice with the superevent's latest sky map and
  classification, the superevent exposed and those files tagged
  ``public``, and its circular draft;
* ``ADVNO``: the **Retraction** notice and its circular draft, only if a
  public notice went out; nothing automatic follows it;
* :func:`update_alert`: an **Update** with the named (or latest)
  products; after the Initial, a sky map uploaded to the superevent sends
  one by itself (:func:`plan_automatic_update`);
* ``DQV`` after the preliminary notice: a note in the superevent's log
  for the rapid-response team;
* ``RAVEN_ALERT`` (a significant coincidence with an external trigger)
  makes a GW candidate of any FAR eligible for public alerts, as in the
  reference pipeline: a sub-threshold superevent's preliminary alert is
  :func:`~gwcelery.tasks.lifecycle_plan.plan_raven_preliminary` (started by
  :mod:`gwcelery.tasks.raven_followup`).

A sign-off that calls for nothing (no notice went out, the Initial or the
Retraction was already sent) and an Update that cannot go out are written
to the worker's log and to the superevent's log.
"""

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from . import alerts, core, gracedb, lvalert
from .lifecycle_plan import (
    FITS_SUFFIXES,
    PUBLIC_NOTICES,
    automatic_alert_blocked,
    latest_products,
    log_numbers,
    plan_signoff,
    plan_update,
    resolve_filename,
)

log = get_task_logger(__name__)

#: LVAlert nodes of the superevents of each category.
SUPEREVENT_NODES = ('superevent', 'test_superevent', 'mdc_superevent')


# --- decisions (pure) -----------------------------------------------------
# Not in lifecycle_plan: they need the task module alerts (its log
# format), which a helper never imports.


def sent_notice_entries(log_entries):
    """The log entries of the notices sent to GCN, in order (each sent
    notice is uploaded with :data:`gwcelery.tasks.alerts.SENT_COMMENT`)."""
    return [entry for entry in log_entries
            if entry.get('comment') == alerts.SENT_COMMENT
            and (entry.get('filename') or '').endswith('.xml')]


def notices_sent(log_entries):
    """The alert types of the notices sent to GCN, in order, from a
    superevent's log."""
    return [alerts.parse_filename(entry['filename'])[2]
            for entry in sent_notice_entries(log_entries)]


def plan_automatic_update(labels, log_entries, number):
    """Why the sky map uploaded in log entry ``number`` of a superevent
    brings no automatic Update, or ``None``.

    The rule: once the Initial notice went out, a sky map uploaded to the
    superevent after the last notice (a new preferred event's, copied by
    its preliminary alert, or a later analysis's) is sent as an Update
    with the latest products. Before the Initial, the Initial itself
    takes the latest sky map."""
    sent = notices_sent(log_entries)
    if 'Initial' not in sent:
        return 'the Initial notice has not gone out yet'
    why_not = plan_update(labels, sent)
    if why_not is not None:
        return why_not
    if number < sent_notice_entries(log_entries)[-1]['N']:
        return 'a later notice already went out'
    return None


# --- tasks ----------------------------------------------------------------


def refuse(superevent_id, message):
    """Write why nothing is sent to the worker's and the superevent's
    logs."""
    log.warning('%s: %s', superevent_id, message)
    gracedb.upload.delay(None, None, superevent_id, message, ['em_follow'])


def is_decision_label(alert):
    """Whether a ``label_added`` alert is of a sign-off result (ADVOK,
    ADVNO) or a data-quality veto (DQV)."""
    conf = app.conf
    return alert['data'].get('name') in (conf.advocate_ok_label,
                                         conf.advocate_no_label,
                                         conf.data_quality_veto_label)


def may_bring_update(alert):
    """Whether a ``log`` alert of a superevent may call for an automatic
    Update: a FITS sky map tagged ``sky_loc`` on a superevent signed off
    OK (no Initial, so no Update, without ADVOK). The copies of a
    preliminary alert thus start nothing."""
    entry = alert['data']
    return ((entry.get('filename') or '').endswith(FITS_SUFFIXES)
            and 'sky_loc' in entry.get('tag_names', ())
            and app.conf.advocate_ok_label in (
                alert['object'].get('labels') or ()))


@lvalert.handler(*SUPEREVENT_NODES, alert_types=('label_added',),
                 when=is_decision_label, shared=False, ignore_result=True)
def handle_label(alert):
    """Act on a sign-off result (ADVOK, ADVNO) or a late data-quality
    veto (DQV) of a superevent."""
    superevent_id = alert['object']['superevent_id']
    label = alert['data']['name']
    conf = app.conf
    if label in (conf.advocate_ok_label, conf.advocate_no_label):
        chain(group(gracedb.get_superevent.si(superevent_id),
                    gracedb.get_log.si(superevent_id)),
              decide_signoff.s(label)).delay()
    elif label == conf.data_quality_veto_label:
        chain(gracedb.get_log.si(superevent_id),
              note_late_veto.s(superevent_id)).delay()


@lvalert.handler(*SUPEREVENT_NODES, alert_types=('log',),
                 when=may_bring_update, shared=False, ignore_result=True)
def handle_skymap(alert):
    """A sky map uploaded to a superevent signed off OK
    (:func:`may_bring_update`): an automatic Update if
    :func:`plan_automatic_update` says so."""
    entry = alert['data']
    superevent_id = alert['object']['superevent_id']
    chain(group(gracedb.get_superevent.si(superevent_id),
                gracedb.get_log.si(superevent_id)),
          decide_automatic_update.s(entry['N'])).delay()


@app.task(shared=False, ignore_result=True)
def decide_automatic_update(state, number):
    """Given ``[superevent, log entries]``, send the Update that the sky
    map of log entry ``number`` calls for, if any."""
    superevent, log_entries = state
    why_not = plan_automatic_update(superevent['labels'], log_entries,
                                    number)
    if why_not is not None:
        log.info('%s: no automatic Update for log entry %d: %s',
                 superevent['superevent_id'], number, why_not)
        return
    product_canvas(superevent, 'Update', latest_products(log_entries),
                   log_entries).delay()


@gracedb.task(shared=False, ignore_result=True)
def send_automatic(state, superevent, alert_type, skymap_filename=None,
                   em_bright_json=None, p_astro_json=None, followups=()):
    """Given the superevent's current ``[labels, log entries]``, send an
    automatic notice (EarlyWarning, Preliminary) unless
    :func:`~gwcelery.tasks.lifecycle_plan.automatic_alert_blocked` says no.
    A blocked notice that brings a sky map to a superevent signed off OK
    without an Initial (the sign-off came before any sky map) starts the
    Initial."""
    labels, log_entries = state
    sent = notices_sent(log_entries)
    why_not = automatic_alert_blocked(labels, sent)
    if why_not is not None:
        superevent_id = superevent['superevent_id']
        refuse(superevent_id, f'Blocking automated {alert_type} notice, '
               f'because {why_not}')
        if (skymap_filename is not None and 'Initial' not in sent
                and app.conf.advocate_ok_label in labels):
            # An ADVOK that came before any sky map sent no Initial; this
            # notice's sky map, now on the superevent, completes it.
            chain(group(gracedb.get_superevent.si(superevent_id),
                        gracedb.get_log.si(superevent_id)),
                  decide_signoff.s(app.conf.advocate_ok_label)).delay()
        return
    # Inline: one hop less on the alert's path.
    alerts.register(superevent, alert_type, skymap_filename, em_bright_json,
                    p_astro_json, followups)


@app.task(shared=False, ignore_result=True)
def decide_signoff(state, label):
    """Given ``[superevent, log entries]``, send the notice that the
    sign-off result ``label`` calls for
    (:func:`~gwcelery.tasks.lifecycle_plan.plan_signoff`)."""
    superevent, log_entries = state
    superevent_id = superevent['superevent_id']
    alert_type, why_not = plan_signoff(label, superevent['labels'],
                                       notices_sent(log_entries))
    if alert_type is None:
        refuse(superevent_id, f'{label}: no notice sent, because '
               f'{why_not}')
    elif alert_type == 'Retraction':
        log.info('%s: %s: sending the Retraction notice', superevent_id,
                 label)
        alerts.register.delay(superevent, 'Retraction', followups=[
            alerts.circular_canvas(superevent, 'Retraction')])
    else:
        names = latest_products(log_entries)
        if names[0] is None:
            refuse(superevent_id, f'{label}: no Initial notice sent, '
                   'because the superevent has no sky map')
            return
        log.info('%s: %s: sending the Initial notice', superevent_id, label)
        product_canvas(superevent, 'Initial', names, log_entries).delay()


def product_canvas(superevent, alert_type, names, log_entries):
    """Download the products ``names`` (sky map, source properties,
    classification; versioned or ``None``) of a superevent, then
    :func:`publish_and_send`."""
    superevent_id = superevent['superevent_id']
    return chain(
        group(gracedb.download.si(name, superevent_id) if name
              else core.identity.si(None) for name in names),
        publish_and_send.s(superevent, alert_type, names,
                           log_numbers(log_entries, names)))


@app.task(shared=False, ignore_result=True)
def publish_and_send(contents, superevent, alert_type, names, numbers):
    """Make the superevent and the products' log entries (``numbers``)
    public, then send the ``alert_type`` notice with them (``contents``:
    sky map, source properties and classification) and its circular
    draft."""
    superevent_id = superevent['superevent_id']
    em_bright, p_astro = (content.decode() if isinstance(content, bytes)
                          else content for content in contents[1:])
    skymap_name = names[0]
    chain(
        gracedb.expose.si(superevent_id),
        *(gracedb.create_tag.si(superevent_id, number, 'public')
          for number in numbers),
        alerts.register.si(
            superevent, alert_type, skymap_name, em_bright, p_astro,
            followups=[alerts.circular_canvas(
                superevent, alert_type, skymap_name, em_bright, p_astro)]),
    ).delay()


@app.task(shared=False, ignore_result=True)
def note_late_veto(log_entries, superevent_id):
    """A DQV label after a public notice: tell the rapid-response team in
    the superevent's log (a Retraction follows their NO sign-off)."""
    sent = notices_sent(log_entries)
    if not any(alert_type in PUBLIC_NOTICES for alert_type in sent):
        return
    refuse(superevent_id, f'{app.conf.data_quality_veto_label} applied '
           f'after the {sent[-1]} notice: the rapid-response team should '
           'review this candidate (an ADV NO sign-off retracts it)')


@app.task(shared=False, ignore_result=True,
          name='gwcelery.tasks.orchestrator.update_alert')
def update_alert(superevent_id, skymap_filename=None,
                 em_bright_filename=None, p_astro_filename=None):
    """Send an Update notice for a superevent with the named products
    (file names of its log, optionally versioned ``name,N``; the latest
    version if unversioned); a product not named is the latest one of
    its kind (:func:`~gwcelery.tasks.lifecycle_plan.latest_products`)."""
    chain(group(gracedb.get_superevent.si(superevent_id),
                gracedb.get_log.si(superevent_id)),
          decide_update.s([skymap_filename, em_bright_filename,
                           p_astro_filename])).delay()


@app.task(shared=False, ignore_result=True)
def decide_update(state, requested):
    """Given ``[superevent, log entries]``, send an Update with the
    ``requested`` products (names or ``None``; see :func:`update_alert`)
    unless :func:`~gwcelery.tasks.lifecycle_plan.plan_update` says no or a
    name is unknown."""
    superevent, log_entries = state
    superevent_id = superevent['superevent_id']
    why_not = plan_update(superevent['labels'], notices_sent(log_entries))
    if why_not is not None:
        refuse(superevent_id, f'No Update notice sent, because {why_not}')
        return
    names = list(latest_products(log_entries))
    for index, name in enumerate(requested):
        if name is None:
            continue
        names[index] = resolve_filename(name, log_entries)
        if names[index] is None:
            refuse(superevent_id, f'No Update notice sent, because the '
                   f'superevent has no file {name}')
            return
    if names[0] is None:
        refuse(superevent_id, 'No Update notice sent, because the '
               'superevent has no sky map')
        return
    product_canvas(superevent, 'Update', names, log_entries).delay()
