"""Sending a superevent's notices: every alert type goes the same way.

:func:`register` has GraceDB create the VOEvent record of an alert type
(GraceDB numbers them per superevent: that number ``N`` is the notice's
serial number, ``Pkt_Ser_Num``, and its IVORN ``...#{superevent_id}-N-
{AlertType}``); :func:`send_voevent` writes our notice for that record
(:func:`build_notice`), sends it to GCN, uploads it over GraceDB's copy so
that GraceDB serves exactly what GCN received, then starts the follow-up
steps it was given (labels, circular draft). A superevent labelled
``RAVEN_ALERT`` has its notices (but not a Retraction) carry its external
coincidence: GraceDB's RAVEN fields and the VOEvent's ``External
Coincidence`` group (:func:`gwcelery.tasks.raven.alert_coincidence`).

The Initial and the Retraction go out at most once per superevent
(:data:`ONCE_ONLY`): before sending one, :func:`send_voevent` claims it in
the broker's Redis (:func:`claim`); a repeated task for the same record
goes on (it is the same notice), any other record of that type is not
sent and the superevent's log says so.
"""

import json

import redis
from celery import chain, group, signature
from celery.utils.log import get_task_logger

from .. import app, voevent
from . import (
    circulars,
    core,
    gcn,
    gracedb,
    kafka,
    raven,
    raven_rules,
    superevents,
)

log = get_task_logger(__name__)

#: Alert types that a superevent gets at most once.
ONCE_ONLY = ('Initial', 'Retraction')

#: Comment of the log entry that uploads a notice sent to GCN: the
#: superevent's log tells which notices went out.
SENT_COMMENT = 'VOEvent sent to GCN'

#: GraceDB's ``create_voevent`` type of each alert type.
GRACEDB_TYPES = {'EarlyWarning': 'earlywarning',
                 'Preliminary': 'preliminary', 'Initial': 'initial',
                 'Update': 'update', 'Retraction': 'retraction'}

#: Alert type of each of GraceDB's VOEvent type codes.
ALERT_TYPES = {'EW': 'EarlyWarning', 'PR': 'Preliminary', 'IN': 'Initial',
               'UP': 'Update', 'RE': 'Retraction'}


def skymap_type(filename):
    """The kind of a sky map, from its (maybe versioned) file name:
    ``bayestar`` for ``bayestar.multiorder.fits,0``."""
    return filename.split(',')[0].split('.', 1)[0]


def voevent_classification(em_bright_json, p_astro_json):
    """The GraceDB ``create_voevent`` fields of the classification
    files."""
    fields = {}
    if em_bright_json is not None:
        properties = json.loads(em_bright_json)
        fields.update(ProbHasNS=properties['HasNS'],
                      ProbHasRemnant=properties['HasRemnant'])
        if 'HasMassGap' in properties:
            fields['HasMassGap'] = properties['HasMassGap']
    if p_astro_json is not None:
        fields.update(json.loads(p_astro_json))
    return fields


def is_injection(superevent):
    """Whether the superevent or its preferred event is a hardware
    injection (:obj:`~gwcelery.conf.injection_label`)."""
    label = app.conf.injection_label
    return (label in (superevent.get('labels') or ())
            or label in (superevent['preferred_event_data'].get('labels')
                         or ()))


def superevent_role(superevent_id):
    """VOEvent role: ``observation`` for production superevents, ``test``
    for Test and MDC ones."""
    category = superevents.superevent_category(superevent_id)
    return 'observation' if category == 'Production' else 'test'


def coincidence_fields(coincidence):
    """GraceDB's ``create_voevent`` fields of an external coincidence
    (:func:`gwcelery.external.coincidence.alert_coincidence`)."""
    fields = dict(raven_coinc=True,
                  ext_gcn=coincidence['gcn_notice_id'],
                  ext_pipeline=coincidence['observatory'],
                  ext_search=coincidence['search'],
                  time_coinc_far=coincidence['time_coincidence_far'],
                  space_coinc_far=coincidence[
                      'time_sky_position_coincidence_far'],
                  combined_skymap_filename=coincidence[
                      'combined_skymap_filename'])
    return {key: value for key, value in fields.items()
            if value is not None}


def voevent_fields(superevent, alert_type, skymap_filename=None,
                   em_bright_json=None, p_astro_json=None,
                   coincidence=None):
    """The fields of GraceDB's ``create_voevent`` for a notice; a
    Retraction names no products and no coincidence."""
    fields = dict(internal=False, open_alert=True,
                  hardware_inj=is_injection(superevent))
    if alert_type == 'Retraction':
        return fields
    fields.update(voevent_classification(em_bright_json, p_astro_json))
    if skymap_filename is not None:
        fields.update(skymap_type=skymap_type(skymap_filename),
                      skymap_filename=skymap_filename)
    if coincidence is not None:
        fields.update(coincidence_fields(coincidence))
    return fields


def parse_filename(filename):
    """``(superevent_id, serial_number, alert_type)`` of GraceDB's VOEvent
    file name ``{superevent_id}-{N}-{AlertType}.xml``."""
    superevent_id, serial_number, alert_type = \
        filename[:-len('.xml')].rsplit('-', 2)
    return superevent_id, int(serial_number), alert_type


def build_notice(filename, superevent, skymap_filename, em_bright_json,
                 p_astro_json, coincidence=None):
    """Write our VOEvent for GraceDB's record ``filename`` in the LVK
    format (:func:`gwcelery.voevent.build`), with the external
    ``coincidence`` if any, and validate it."""
    superevent_id = superevent['superevent_id']
    _, serial_number, alert_type = parse_filename(filename)
    event = superevent['preferred_event_data']
    skymap_url = None
    if skymap_filename is not None:
        skymap_url = (f'{app.conf.gracedb_url}superevents/{superevent_id}/'
                      f'files/{skymap_filename}')
    payload = voevent.build(
        ivorn=voevent.ivorn(app.conf.voevent_ivorn_prefix, superevent_id,
                            serial_number, alert_type),
        superevent_id=superevent_id, alert_type=alert_type,
        serial_number=serial_number, gpstime=event['gpstime'],
        far=event['far'],
        instruments=[ifo for ifo in event['instruments'].split(',') if ifo],
        group=event['group'], pipeline=event['pipeline'],
        search=event.get('search'),
        event_page=circulars.superevent_page(superevent_id),
        role=superevent_role(superevent_id), skymap_url=skymap_url,
        skymap_type=(skymap_type(skymap_filename)
                     if skymap_filename else 'bayestar'),
        classification=json.loads(p_astro_json) if p_astro_json else None,
        properties=json.loads(em_bright_json) if em_bright_json else None,
        hardware_injection=is_injection(superevent),
        coincidence=None if alert_type == 'Retraction' else coincidence)
    voevent.validate(payload)
    return payload


def claim(superevent_id, alert_type, token):
    """Claim the one ``alert_type`` notice of a superevent for ``token``
    (e.g. the VOEvent file name); return whether ``token`` holds it (it
    did already, or it does now). Atomic in Redis, so that two workers
    never both hold it."""
    client = redis.Redis.from_url(app.conf.broker_url)
    key = f'gwcelery:alert-once:{superevent_id}:{alert_type}'
    try:
        if client.set(key, token, nx=True,
                      ex=int(app.conf.alert_once_expiry)):
            return True
        return client.get(key) == token.encode()
    finally:
        client.close()


def may_carry_coincidence(superevent, alert_type):
    """Whether a notice may carry an external coincidence: not a
    Retraction, and the superevent had a coincidence (``EM_COINC``) when
    the notice was decided. Only then is the coincidence looked up."""
    return alert_type != 'Retraction' and bool(
        {raven_rules.EM_COINC, raven_rules.RAVEN_ALERT}
        & set(superevent['labels']))


@gracedb.task(shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True)
def register(superevent, alert_type, skymap_filename=None,
             em_bright_json=None, p_astro_json=None, followups=()):
    """Have GraceDB create the VOEvent record of an ``alert_type`` notice
    (its serial number), then :func:`send_voevent` with the same
    products and ``followups`` (signatures). A superevent with a
    coincidence first gets its current external coincidence
    (:func:`gwcelery.tasks.raven.alert_coincidence`), which the notice
    carries when the superevent is labelled ``RAVEN_ALERT``."""
    superevent_id = superevent['superevent_id']
    products = (superevent, alert_type, skymap_filename, em_bright_json,
                p_astro_json, followups)
    if may_carry_coincidence(superevent, alert_type):
        chain(raven.alert_coincidence.si(superevent_id),
              register_with_coincidence.s(*products)).delay()
    else:
        register_with_coincidence(None, *products)


@gracedb.task(shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True)
def register_with_coincidence(coincidence, superevent, alert_type,
                              skymap_filename=None, em_bright_json=None,
                              p_astro_json=None, followups=()):
    """:func:`register`, given the external ``coincidence`` (or
    ``None``). GraceDB's record is created inline (one hop less on the
    alert's path); a retry finds a record whose answer was lost
    (:func:`gwcelery.tasks.gracedb.create_voevent`)."""
    superevent_id = superevent['superevent_id']
    fields = voevent_fields(superevent, alert_type, skymap_filename,
                            em_bright_json, p_astro_json, coincidence)
    filename = gracedb.create_voevent(superevent_id,
                                      GRACEDB_TYPES[alert_type], **fields)
    send_voevent.delay(filename, superevent, skymap_filename, em_bright_json,
                       p_astro_json, followups, coincidence)


@app.task(shared=False, ignore_result=True, acks_late=True,
          reject_on_worker_lost=True,
          autoretry_for=(redis.ConnectionError, redis.TimeoutError),
          retry_backoff=True, retry_backoff_max=60, max_retries=None)
def send_voevent(filename, superevent, skymap_filename, em_bright_json,
                 p_astro_json, followups=(), coincidence=None):
    """Build our VOEvent for GraceDB's record ``filename``; send it to
    GCN (:func:`gwcelery.tasks.gcn.send`, inline: one hop less on the
    alert's path); upload it as the latest version of ``filename``; then
    start the ``followups`` (signatures, in parallel). An Initial or
    Retraction that another record already claimed is not sent. Retries
    while Redis is unreachable: the claim and the queueing are both safe
    to repeat."""
    superevent_id, _, alert_type = parse_filename(filename)
    if alert_type in ONCE_ONLY and not claim(superevent_id, alert_type,
                                             filename):
        message = (f'{alert_type} notice {filename} not sent: this '
                   f'superevent already had its {alert_type} notice')
        log.warning('%s: %s', superevent_id, message)
        gracedb.upload.delay(None, None, superevent_id, message,
                             ['em_follow'])
        return
    payload = build_notice(filename, superevent, skymap_filename,
                           em_bright_json, p_astro_json, coincidence)
    gcn.send(payload)
    steps = [gracedb.upload.si(payload, filename, superevent_id,
                               SENT_COMMENT,
                               ['em_follow', 'public'])]
    if followups:
        # After the notice, so that nothing delays it.
        steps.append(group(signature(followup, app=app)
                           for followup in followups))
    chain(*steps).delay()
    if app.conf['kafka_alert_config']:
        # The same notice in the IGWN alert schema, beside the VOEvent.
        kafka.send_alert.delay(superevent, alert_type, skymap_filename,
                               em_bright_json, p_astro_json, coincidence)


def circular_filename(alert_type):
    """File name of the circular draft of an alert type, e.g.
    ``initial-circular.txt``."""
    return f'{alert_type.lower()}-circular.txt'


def circular_canvas(superevent, alert_type, skymap_filename=None,
                    em_bright_json=None, p_astro_json=None):
    """Write the circular draft of a notice (from the sky map, downloaded
    once, if there is one) and upload it to the superevent."""
    superevent_id = superevent['superevent_id']
    first = (gracedb.download.si(skymap_filename, superevent_id)
             if skymap_filename else core.identity.si(None))
    return chain(
        first,
        circulars.create_circular.s(superevent, skymap_filename,
                                    p_astro_json, em_bright_json,
                                    alert_type=alert_type),
        gracedb.upload.s(circular_filename(alert_type), superevent_id,
                         f'Template for {alert_type} GCN Circular',
                         ['em_follow']))
