"""The life of a superevent's public alerts after its preliminary notice.

The decisions are pure functions of what GraceDB holds (the superevent's
labels and log), like :func:`gwcelery.tasks.superevents.plan`: which
notices went out (:func:`notices_sent`), whether an automatic notice may
go out (:func:`automatic_alert_blocked`), what a sign-off calls for
(:func:`plan_signoff`), whether an Update may go out
(:func:`plan_update`) and with which products (:func:`latest_products`).
The tasks below them read GraceDB, decide, and start the writes:

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
  :func:`plan_raven_preliminary` (started by
  :mod:`gwcelery.tasks.raven_followup`).

A sign-off that calls for nothing (no notice went out, the Initial or the
Retraction was already sent) and an Update that cannot go out are written
to the worker's log and to the superevent's log.
"""

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from . import alerts, core, gracedb, lvalert, raven, superevents

log = get_task_logger(__name__)

#: LVAlert nodes of the superevents of each category.
SUPEREVENT_NODES = ('superevent', 'test_superevent', 'mdc_superevent')

#: Alert types that tell the public about a candidate.
PUBLIC_NOTICES = ('EarlyWarning', 'Preliminary', 'Initial', 'Update')

#: Name endings of sky map files.
FITS_SUFFIXES = ('.fits', '.fits.gz')


# --- decisions (pure) -----------------------------------------------------


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


def automatic_alert_blocked(labels, sent):
    """Why an automatic notice (EarlyWarning, Preliminary) may not go out
    for a superevent with these labels and notices sent, or ``None``."""
    conf = app.conf
    decided = {conf.advocate_ok_label, conf.advocate_no_label} & set(labels)
    if 'Retraction' in sent:
        return 'the superevent was retracted'
    if decided:
        return f'an operator decided ({", ".join(sorted(decided))})'
    if conf.injection_label in labels:
        return f'it is an injection ({conf.injection_label})'
    if conf.data_quality_veto_label in labels:
        return f'its data quality vetoes it ({conf.data_quality_veto_label})'
    return None


def plan_raven_preliminary(superevent, sent):
    """Why a superevent with the notices ``sent`` gets no preliminary
    alert for its RAVEN coincidence, or ``None``.

    The orchestrator sends the preliminary alert of a superevent whose
    preferred event passes the threshold when it is labelled
    ``EM_READY``; a sub-threshold one gets it here once it has both
    ``EM_READY`` (its preferred event has its products) and
    ``RAVEN_ALERT``, whichever comes last."""
    labels = superevent['labels']
    if raven.RAVEN_ALERT not in labels:
        return 'it has no significant external coincidence'
    if app.conf.superevent_em_ready_label not in labels:
        return 'its preferred event is not complete yet'
    if superevents.passes_public_threshold(
            superevent['preferred_event_data']):
        return 'its preferred event passes the threshold by itself'
    if any(alert_type in PUBLIC_NOTICES for alert_type in sent):
        return 'a public notice already went out'
    return None


def plan_signoff(label, labels, sent):
    """What a sign-off result ``label`` (ADVOK or ADVNO) calls for:
    ``('Initial' or 'Retraction', None)``, or ``(None, why not)``."""
    conf = app.conf
    if 'Retraction' in sent:
        return None, 'its Retraction notice was already sent'
    public = [alert_type for alert_type in sent
              if alert_type in PUBLIC_NOTICES]
    if label == conf.advocate_no_label:
        if not public:
            return None, 'no public notice went out: nothing to retract'
        return 'Retraction', None
    if 'Initial' in sent:
        return None, 'its Initial notice was already sent'
    if conf.injection_label in labels:
        return None, 'it is an injection: never alerted publicly'
    if not public:
        return None, 'no notice went out for it: no Initial notice'
    return 'Initial', None


def plan_update(labels, sent):
    """Why an Update may not go out for a superevent, or ``None``."""
    conf = app.conf
    if 'Retraction' in sent or conf.advocate_no_label in labels:
        return 'it was retracted'
    if conf.injection_label in labels:
        return 'it is an injection'
    if not any(alert_type in PUBLIC_NOTICES for alert_type in sent):
        return 'no public notice went out for it'
    return None


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


def file_versions(log_entries):
    """Each file of a log, in order of its latest upload:
    ``{name: 'name,version'}``."""
    files = {}
    for entry in log_entries:
        if entry.get('filename'):
            files.pop(entry['filename'], None)
            files[entry['filename']] = (f"{entry['filename']},"
                                        f"{entry['file_version']}")
    return files


def resolve_filename(name, log_entries):
    """The versioned name (``name,N``) of a file of the log: the latest
    version if ``name`` gives none; ``None`` if there is no such file."""
    files = file_versions(log_entries)
    if ',' in name:
        base, _, version = name.rpartition(',')
        exists = any(entry.get('filename') == base
                     and str(entry.get('file_version')) == version
                     for entry in log_entries)
        return name if exists else None
    return files.get(name)


def latest_products(log_entries):
    """Versioned names (or ``None``) of the latest sky map (a FITS file
    tagged ``sky_loc``), source properties and classification of a
    superevent's log."""
    skymap = em_bright = p_astro = None
    for entry in log_entries:
        name = entry.get('filename') or ''
        versioned = f'{name},{entry.get("file_version")}'
        if name.endswith(FITS_SUFFIXES) and 'sky_loc' in (
                entry.get('tag_names') or ()):
            skymap = versioned
        elif name == 'em_bright.json':
            em_bright = versioned
        elif name.endswith('.p_astro.json'):
            p_astro = versioned
    return skymap, em_bright, p_astro


def log_numbers(log_entries, versioned_names):
    """The log entry numbers that uploaded these versioned files."""
    wanted = set(versioned_names) - {None}
    return [entry['N'] for entry in log_entries
            if f'{entry.get("filename")},{entry.get("file_version")}'
            in wanted]


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
    :func:`automatic_alert_blocked` says no. A blocked notice that brings
    a sky map to a superevent signed off OK without an Initial (the sign-off
    came before any sky map) starts the Initial."""
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
    sign-off result ``label`` calls for (:func:`plan_signoff`)."""
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
    its kind (:func:`latest_products`)."""
    chain(group(gracedb.get_superevent.si(superevent_id),
                gracedb.get_log.si(superevent_id)),
          decide_update.s([skymap_filename, em_bright_filename,
                           p_astro_filename])).delay()


@app.task(shared=False, ignore_result=True)
def decide_update(state, requested):
    """Given ``[superevent, log entries]``, send an Update with the
    ``requested`` products (names or ``None``; see :func:`update_alert`)
    unless :func:`plan_update` says no or a name is unknown."""
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
