"""The orchestrator, per event: what each search's uploads start
(besides the localisation, :mod:`gwcelery.tasks.localization`).

**Classification.** O4 searches upload their own source classification
(``{pipeline}.p_astro.json``) and some their own source properties
(``{pipeline}.em_bright.json``) shortly after the candidate. Their upload
(a ``log`` alert) is checked and labels the event PASTRO_READY or
EMBRIGHT_READY (:func:`adopt_product`). After
:obj:`~gwcelery.conf.pipeline_products_wait` seconds from the event's
creation, :func:`complete_products` reads the event's log and computes
only what the search did not provide (:func:`missing_products`): the
source properties (``em_bright.json``) and the classification
(``{pipeline}.p_astro.json``), each uploaded and labelled. A search's file
that cannot be read is logged and replaced by ours.

**Bursts.** The search uploads its own sky map; its FITS upload labels the
event SKYMAP_READY.
"""

import json
import math

from celery import chain, group
from celery.utils.log import get_task_logger

from .. import app
from . import (
    bayestar,
    em_bright,
    gracedb,
    lifecycle_plan,
    localization,
    lvalert,
    p_astro,
    superevents,
)

log = get_task_logger(__name__)

EM_BRIGHT_FILENAME = 'em_bright.json'
"""Source properties file that we compute for a CBC event."""

COINC_FILENAME = bayestar.COINC_FILENAME
"""The candidate file that CBC pipelines upload."""

CBC_NODES = localization.CBC_NODES
"""LVAlert nodes of the CBC searches (production/MDC and Test)."""

BURST_NODES = tuple(f'{prefix}_{pipeline}'
                    for pipeline, group_name
                    in superevents.PIPELINE_GROUPS.items()
                    if group_name == 'Burst' for prefix in ('burst', 'test'))
"""LVAlert nodes of the burst searches (production/MDC and Test)."""

#: Label of each classification product once it exists.
PRODUCT_LABELS = {'p_astro': 'PASTRO_READY', 'em_bright': 'EMBRIGHT_READY'}

#: Keys (all probabilities) that a search's file must have, by product.
PRODUCT_KEYS = {'p_astro': ('BNS', 'NSBH', 'BBH', 'Terrestrial'),
                'em_bright': ('HasNS', 'HasRemnant')}


def pipeline_filenames(pipeline):
    """The files in which ``pipeline`` provides its own products:
    ``{'p_astro': 'gstlal.p_astro.json', 'em_bright':
    'gstlal.em_bright.json'}`` for gstlal."""
    return {'p_astro': p_astro.filename(pipeline),
            'em_bright': f'{pipeline.lower()}.em_bright.json'}


def product_of_upload(filename, pipeline):
    """Which product (``'p_astro'``, ``'em_bright'``) a file uploaded to
    an event of ``pipeline`` is the search's own, or ``None``."""
    return next((kind for kind, name in pipeline_filenames(pipeline).items()
                 if name == filename), None)


def missing_products(filenames, pipeline):
    """The products to compute for an event whose log holds
    ``filenames``: those its search did not upload, in a fixed order."""
    own = pipeline_filenames(pipeline)
    return [kind for kind in PRODUCT_LABELS if own[kind] not in filenames]


def check_product(kind, contents):
    """Return the parsed product file of a search, or raise
    :class:`ValueError` saying what is wrong with it (not JSON, a key
    missing, a value that is not a probability)."""
    try:
        data = json.loads(contents)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'not JSON: {exc}') from None
    if not isinstance(data, dict):
        raise ValueError('not a JSON object')
    for key in PRODUCT_KEYS[kind]:
        value = data.get(key)
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not 0 <= value <= 1):
            raise ValueError(f'{key} is {value!r}, not a probability')
    if kind == 'p_astro' and not math.isclose(
            sum(data[key] for key in PRODUCT_KEYS[kind]), 1, abs_tol=1e-3):
        raise ValueError('the probabilities do not sum to 1')
    return data


def may_need_products(alert):
    """Whether a CBC event's alert concerns its classification: the
    creation of a candidate, or the upload of its search's own product
    file."""
    event = alert['object']
    if not localization.is_candidate(event):
        return False
    return alert['alert_type'] == 'new' or product_of_upload(
        (alert.get('data') or {}).get('filename'),
        event['pipeline']) is not None


@lvalert.handler(*CBC_NODES, alert_types=('new', 'log'),
                 when=may_need_products, shared=False, ignore_result=True)
def handle_cbc_event(alert):
    """Classify a CBC event (see the module docstring): on its creation,
    after a short wait, compute the missing products; on the upload of
    its search's own product, adopt it. (Its localisation is
    :func:`gwcelery.tasks.localization.localize`'s.)"""
    event = alert['object']
    graceid = event['graceid']
    if alert['alert_type'] == 'new':
        chain(gracedb.get_log.si(graceid),
              complete_products.s(event)).apply_async(
            countdown=app.conf.pipeline_products_wait)
        return
    filename = alert['data']['filename']
    kind = product_of_upload(filename, event['pipeline'])
    if kind:
        chain(gracedb.download.si(filename, graceid),
              adopt_product.s(kind, event)).delay()


@app.task(shared=False, ignore_result=True)
def complete_products(log_entries, event):
    """Compute the products that the event's search did not upload
    (:func:`missing_products`): download ``coinc.xml`` once, then each in
    parallel."""
    filenames = {entry.get('filename') for entry in log_entries}
    kinds = missing_products(filenames, event['pipeline'])
    log.info('%s: computing %s (not uploaded by %s)', event['graceid'],
             ', '.join(kinds) or 'nothing', event['pipeline'])
    if kinds:
        chain(gracedb.download.si(COINC_FILENAME, event['graceid']),
              group(compute_canvas(kind, event) for kind in kinds)).delay()


def compute_canvas(kind, event):
    """From the downloaded ``coinc.xml``: compute one product, upload it
    and label the event."""
    graceid = event['graceid']
    if kind == 'em_bright':
        compute = em_bright.source_properties.s()
        upload = gracedb.upload.s(EM_BRIGHT_FILENAME, graceid,
                                  'Source properties (HasNS, HasRemnant)',
                                  ['em_bright', 'public'])
    else:
        compute = p_astro.compute_p_astro.s(event)
        upload = gracedb.upload.s(p_astro.filename(event['pipeline']),
                                  graceid, 'Source classification (p_astro)',
                                  ['p_astro', 'public'])
    return chain(compute, upload,
                 gracedb.create_label.si(PRODUCT_LABELS[kind], graceid))


@app.task(shared=False, ignore_result=True)
def adopt_product(contents, kind, event):
    """Label the event from its search's own product file if the file is
    sound (:func:`check_product`); otherwise say why in the log and
    compute our own."""
    graceid = event['graceid']
    try:
        check_product(kind, contents)
    except ValueError as exc:
        message = (f'{event["pipeline"]} uploaded an unusable {kind} file '
                   f'({exc}): computing it instead')
        log.error('%s: %s', graceid, message)
        gracedb.upload.delay(None, None, graceid, message, [kind])
        chain(gracedb.download.si(COINC_FILENAME, graceid),
              compute_canvas(kind, event)).delay()
        return
    log.info('%s: using %s\'s own %s', graceid, event['pipeline'], kind)
    gracedb.create_label.delay(PRODUCT_LABELS[kind], graceid)


@lvalert.handler(*BURST_NODES, alert_types=('log',), shared=False,
                 ignore_result=True)
def handle_burst_event(alert):
    """Label a burst event SKYMAP_READY once its pipeline uploaded a FITS
    sky map."""
    event = alert['object']
    filename = (alert.get('data') or {}).get('filename') or ''
    if (alert['alert_type'] == 'log'
            and filename.endswith(lifecycle_plan.FITS_SUFFIXES)
            and localization.is_candidate(event)):
        gracedb.create_label.delay('SKYMAP_READY', event['graceid'])
