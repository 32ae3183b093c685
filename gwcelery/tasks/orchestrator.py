"""The orchestrator: from a candidate to a public alert.

Two sets of LVAlert handlers drive it; every workflow is a Celery canvas
(chains and groups of small tasks) and no task waits for another. Where a
step needs values that only an earlier step computes (e.g. which files
exist), a small task builds the rest of the workflow from them and starts
it (never :meth:`celery.Task.replace`, which fails in the single-process
eager mode).

**Per event** (:mod:`gwcelery.tasks.orchestrator_uploads`): BAYESTAR
starts on the upload that completes its input (``coinc.xml`` with the
PSDs inside, O4 style, or else ``psd.xml.gz``), once per event; the
search's own ``{pipeline}.p_astro.json`` and ``{pipeline}.em_bright.json``
are used where it uploaded them, and what is missing is computed. Labels:
SKYMAP_READY, PASTRO_READY, EMBRIGHT_READY. A burst event's FITS upload
labels it SKYMAP_READY.

**Per superevent** (:func:`handle_superevent`):

* EM_READY (the superevent manager applies it once the preferred event
  has all of its products): the preliminary alert
  (:func:`preliminary_alert`): copy the preferred event's sky map and
  classification to the superevent; the VOEvent, registered with GraceDB,
  sent to GCN, label GCN_PRELIM_SENT; then the plots, the FITS header
  page and the draft circular. If the preferred event changes within
  :obj:`~gwcelery.conf.superevent_clean_up_timeout`, a second preliminary
  alert follows (:func:`repeat_if_changed`).
* a new superevent: if no EM_READY came within
  :obj:`~gwcelery.conf.preliminary_alert_timeout` (e.g. the localisation
  failed), the preliminary alert goes out with what exists
  (:func:`fallback_preliminary`), saying so in the superevent's log.

Alerts go out only for preferred events that pass the public-alert
threshold (:func:`gwcelery.tasks.superevent_rules.passes_public_threshold`),
and only while the superevent's labels allow them
(:func:`gwcelery.tasks.lifecycle_plan.automatic_alert_blocked`). The
notices are sent by :mod:`gwcelery.tasks.alerts`; what follows the
preliminary notice (ADVREQ, sign-off, Initial, Update, Retraction) is
:mod:`gwcelery.tasks.lifecycle`.
"""

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from . import (
    alerts,
    bayestar,
    circulars,
    core,
    early_warning,  # noqa: F401 (registers its handler)
    gracedb,
    lifecycle,
    lifecycle_plan,
    lvalert,
    orchestrator_uploads,
    skymaps,
)
from .raven_rules import RAVEN_ALERT
from .superevent_rules import (
    is_complete,
    passes_public_threshold,
    required_labels,
)

log = get_task_logger(__name__)

CIRCULAR_FILENAME = 'circular.txt'
"""Draft GCN Circular of a superevent."""

SUPEREVENT_NODES = lifecycle.SUPEREVENT_NODES
"""LVAlert nodes of the superevents of each category."""

FITS_SUFFIXES = lifecycle_plan.FITS_SUFFIXES

EM_BRIGHT_FILENAME = orchestrator_uploads.EM_BRIGHT_FILENAME
"""Source properties file of a superevent (whichever file of its preferred
event it is copied from)."""

update_alert = lifecycle.update_alert
"""Send an Update notice (operators, the console): see
:func:`gwcelery.tasks.lifecycle.update_alert`."""


# --- per superevent -------------------------------------------------------


def may_start_alert(alert):
    """Whether a superevent's alert may start its preliminary alert (see
    :func:`handle_superevent`): a new superevent, EM_READY, or an update
    of one that has EM_READY and no preliminary alert yet."""
    conf = app.conf
    if alert['alert_type'] == 'label_added':
        return alert['data'].get('name') == conf.superevent_em_ready_label
    labels = alert['object'].get('labels') or ()
    return alert['alert_type'] == 'new' or (
        conf.superevent_em_ready_label in labels
        and conf.superevent_frozen_label not in labels)


@lvalert.handler(*SUPEREVENT_NODES,
                 alert_types=('new', 'label_added', 'update'),
                 when=may_start_alert, shared=False, ignore_result=True,
                 acks_late=True, reject_on_worker_lost=True)
def handle_superevent(alert):
    """Start the preliminary alert on EM_READY; on a new superevent,
    schedule :func:`fallback_preliminary` (not in the eager mode, which
    has no delayed tasks).

    A superevent that got EM_READY while its preferred event was below
    the public alert threshold gets its alert when an update makes a
    complete event that passes the threshold preferred: no new EM_READY
    comes then, since the label is already there.
    """
    superevent = alert['object']
    superevent_id = superevent['superevent_id']
    if alert['alert_type'] == 'new':
        if app.conf.task_always_eager:
            # The eager mode runs a countdown at once: the fallback would
            # always fire before the sky map.
            log.info('%s: eager mode, no fallback preliminary alert',
                     superevent_id)
            return
        chain(gracedb.get_superevent.si(superevent_id),
              fallback_preliminary.s()).apply_async(
            countdown=app.conf.preliminary_alert_timeout)
    elif alert['alert_type'] == 'label_added':
        if passes_threshold(superevent):
            preliminary_alert(superevent).delay()
    elif (is_complete(superevent['preferred_event_data'])
          and passes_threshold(superevent)):
        preliminary_alert(superevent).delay()


def passes_threshold(superevent):
    """Whether the superevent's preferred event may be alerted publicly;
    log why not otherwise."""
    if passes_public_threshold(superevent['preferred_event_data']):
        return True
    log.info('%s: preferred event %s does not pass the public alert '
             'threshold: no alert', superevent['superevent_id'],
             superevent['preferred_event'])
    return False


@app.task(shared=False, ignore_result=True, acks_late=True,
          reject_on_worker_lost=True)
def fallback_preliminary(superevent):
    """Send the preliminary alert of a superevent that got no EM_READY in
    time (its preferred event lacks a product, e.g. its sky map), with
    the products that exist, and say so in its log."""
    labels = superevent['labels']
    if (app.conf.superevent_em_ready_label in labels
            or app.conf.superevent_frozen_label in labels
            or not passes_threshold(superevent)):
        return
    preferred = superevent['preferred_event_data']
    missing = sorted(required_labels(preferred)
                     - set(preferred['labels']))
    message = (f'Preferred event {preferred["graceid"]} still lacks '
               f'{", ".join(missing)} after '
               f'{app.conf.preliminary_alert_timeout:g} s: sending the '
               'preliminary alert with the products available')
    log.warning('%s: %s', superevent['superevent_id'], message)
    gracedb.upload.delay(None, None, superevent['superevent_id'], message,
                         ['em_follow'])
    preliminary_alert(superevent).delay()


def preliminary_alert(superevent):
    """The canvas of a preliminary alert: at once, copy each of the
    preferred event's products to the superevent (:func:`copy_product`)
    and read the superevent's log (the notices sent, which with its labels
    say whether an automatic notice may go out); then
    :func:`send_preliminary`."""
    return chain(
        group(*(copy_product.si(kind, superevent) for kind in PRODUCTS),
              gracedb.get_log.si(superevent['superevent_id'])),
        send_preliminary.s(superevent))


def latest_files(log_entries):
    """Map each file name in an event log to its latest ``name,version``."""
    files = {}
    for entry in log_entries:
        if entry.get('filename'):
            files[entry['filename']] = (f"{entry['filename']},"
                                        f"{entry['file_version']}")
    return files


def choose_products(log_entries):
    """Return the file names (or ``None``) of the sky map, source
    properties and classification in an event log: BAYESTAR's sky map if
    there is one, else the latest FITS file (a burst pipeline's); ours or
    the search's own source properties and classification."""
    files = latest_files(log_entries)
    skymap = bayestar.SKYMAP_FILENAME if bayestar.SKYMAP_FILENAME in files \
        else next((name for name in reversed(files)
                   if name.endswith(FITS_SUFFIXES)), None)
    p_astro_file = next((name for name in files
                         if name.endswith('.p_astro.json')), None)
    em_bright_file = next((name for name in files
                           if name == EM_BRIGHT_FILENAME
                           or name.endswith('.em_bright.json')), None)
    return [skymap, em_bright_file, p_astro_file]


#: The products that a preliminary alert copies, in the order of
#: :func:`choose_products`: the comment and tags of each copy.
PRODUCTS = {'sky map': ['sky_loc', 'public'],
            'source properties': ['em_bright', 'public'],
            'source classification': ['p_astro', 'public']}


@gracedb.task(shared=False, acks_late=True, reject_on_worker_lost=True)
def copy_product(kind, superevent):
    """Copy the preferred event's product ``kind`` (a key of
    :data:`PRODUCTS`) to the superevent: read the event's log, choose the
    file (:func:`choose_products`), download and upload it, all in one
    task (the file never goes through the broker). The source properties
    go to the superevent as ``em_bright.json`` whichever file of the event
    they come from. Return ``[log entry, contents as text]`` (no text for
    the sky map), or ``[None, None]`` if the event has no such product
    (no sky map is said in the superevent's log). A retry does not upload
    twice (:func:`gwcelery.tasks.gracedb.upload`)."""
    preferred = superevent['preferred_event']
    names = choose_products(gracedb.get_log(preferred))
    name = dict(zip(PRODUCTS, names, strict=True))[kind]
    if name is None:
        if kind == 'sky map':
            gracedb.upload(
                None, None, superevent['superevent_id'],
                f'No sky map available from {preferred}: the preliminary '
                'alert goes out without one', ['sky_loc'])
        return [None, None]
    contents = gracedb.download(name, preferred)
    entry = gracedb.upload(
        contents, EM_BRIGHT_FILENAME if kind == 'source properties' else name,
        superevent['superevent_id'],
        f'{kind.capitalize()} copied from {preferred}', PRODUCTS[kind])
    return [entry, None if kind == 'sky map' else contents.decode()]


@gracedb.task(shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True)
def send_preliminary(results, superevent):
    """Send the preliminary notice with the copied products (the first
    three ``results``, :func:`copy_product`'s; the sky map's entry names
    its version), unless the superevent's labels (as the alert that
    started it saw them: the EM_READY alert's, or those read by the task
    that decided) and log (the last result) block it
    (:func:`gwcelery.tasks.lifecycle.send_automatic`: an operator's
    decision, a retraction, DQV, INJ). After the notice: labels
    GCN_PRELIM_SENT and ADVREQ (the rapid-response team's sign-off), then
    :func:`followup_products`. Also schedules :func:`repeat_if_changed`
    after :obj:`~gwcelery.conf.superevent_clean_up_timeout`.

    Nothing else is started before the notice is out: plots and circular
    come after it, so that they neither delay it nor compete with it for
    the processors."""
    (skymap_entry, _), (_, em_bright_json), (_, p_astro_json), log_entries = \
        results
    superevent_id = superevent['superevent_id']
    preferred = superevent['preferred_event']
    skymap_filename = None
    if skymap_entry is not None:
        skymap_filename = (f"{skymap_entry['filename']},"
                           f"{skymap_entry['file_version']}")
    followups = [
        gracedb.create_label.si(app.conf.superevent_frozen_label,
                                superevent_id),
        gracedb.create_label.si(app.conf.advocate_request_label,
                                superevent_id),
        followup_products.si(superevent, skymap_filename, em_bright_json,
                             p_astro_json),
    ]
    # Inline: one hop less on the alert's path.
    lifecycle.send_automatic([superevent['labels'], log_entries], superevent,
                             'Preliminary', skymap_filename, em_bright_json,
                             p_astro_json, followups)
    chain(gracedb.get_superevent.si(superevent_id),
          repeat_if_changed.s(preferred)).apply_async(
        countdown=app.conf.superevent_clean_up_timeout)


@app.task(shared=False, ignore_result=True, acks_late=True,
          reject_on_worker_lost=True)
def followup_products(superevent, skymap_filename, em_bright_json,
                      p_astro_json):
    """After the notice: download the superevent's sky map (if any) once,
    and from it, in parallel, the all-sky plot, the volume plot (not for
    bursts: their maps have no distance), the FITS header page, and the
    draft circular."""
    superevent_id = superevent['superevent_id']
    circular = chain(
        circulars.create_circular.s(superevent, skymap_filename,
                                    p_astro_json, em_bright_json),
        gracedb.upload.s(CIRCULAR_FILENAME, superevent_id,
                         'Template for the GCN Circular', ['em_follow']))
    if skymap_filename is None:
        chain(core.identity.si(None), circular).delay()
        return
    skymap_name = skymap_filename.split(',')[0]
    base = alerts.skymap_type(skymap_name)
    products = [
        circular,
        chain(skymaps.plot_allsky.s(),
              gracedb.upload.s(f'{base}.png', superevent_id,
                               'Mollweide projection of the sky map',
                               ['sky_loc', 'public'])),
        chain(skymaps.fits_header_html.s(skymap_name),
              gracedb.upload.s(f'{base}.fits.html', superevent_id,
                               'FITS header of the sky map',
                               ['sky_loc', 'public'])),
    ]
    if not circulars.is_burst(superevent['preferred_event_data']):
        products.append(chain(
            skymaps.plot_volume.s(),
            gracedb.upload.s(f'{base}.volume.png', superevent_id,
                             'Volume rendering of the sky map',
                             ['sky_loc', 'public'])))
    chain(gracedb.download.si(skymap_filename, superevent_id),
          group(products)).delay()


@app.task(shared=False, ignore_result=True)
def repeat_if_changed(superevent, alerted_preferred):
    """If the preferred event of a superevent changed since its alert
    (``alerted_preferred``), send a second preliminary alert with the new
    event's products. A superevent labelled ``RAVEN_ALERT`` stays eligible
    with a new preferred event below the threshold: its first alert came
    from the coincidence, which still holds."""
    if superevent['preferred_event'] == alerted_preferred:
        return
    log.info('%s: preferred event changed from %s to %s: second '
             'preliminary alert', superevent['superevent_id'],
             alerted_preferred, superevent['preferred_event'])
    if RAVEN_ALERT in superevent['labels'] or passes_threshold(superevent):
        preliminary_alert(superevent).delay()
