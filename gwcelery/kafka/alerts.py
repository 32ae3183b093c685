"""Public alerts in the IGWN alert schema (``igwn-gwalert-schema``).

:func:`build` writes the record of a notice from the same data as its
VOEvent (:func:`gwcelery.tasks.alerts.build_notice`): the superevent's
preferred event, the classification files, the sky map and the external
coincidence. :func:`validate` checks it against both forms of the schema
and :func:`serialize` writes it as SCiMMA's Avro (sky maps as bytes) or
GCN's JSON (sky maps as base64 text). Pure functions: sending is
:mod:`gwcelery.tasks.kafka`'s.
"""

import base64
import copy
import importlib.resources
import io
import json

import fastavro
import jsonschema
from astropy.time import Time

#: The alert types of the schema, by our alert type.
SCHEMA_ALERT_TYPES = {'EarlyWarning': 'EARLYWARNING',
                      'Preliminary': 'PRELIMINARY', 'Initial': 'INITIAL',
                      'Update': 'UPDATE', 'Retraction': 'RETRACTION'}

#: Serialisations, by the ``format`` of a destination.
FORMATS = ('avro', 'json')


class InvalidAlert(ValueError):
    """A record does not follow the IGWN alert schema (a bug: nothing is
    sent)."""


def _schema_text(name):
    return importlib.resources.files('igwn_gwalert_schema').joinpath(
        name).read_text()


def avro_schema():
    """The parsed Avro schema of the package."""
    return fastavro.parse_schema(
        json.loads(_schema_text('igwn.alerts.Alert.avsc')))


def json_schema():
    """The JSON Schema of the package."""
    return json.loads(_schema_text('igwn.alerts.Alert.schema.json'))


def iso_time(gpstime):
    """ISO 8601 UTC time of a GPS time, to the millisecond, with ``Z``."""
    return Time(gpstime, format='gps').utc.isot + 'Z'


def is_significant(event, far_thresholds, trials_factors):
    """Whether an event is significant in the schema's sense: its FAR
    times its group's trials factor is below its group's threshold."""
    group = event['group']
    return (event['far'] * trials_factors.get(group, 1)
            < far_thresholds[group])


def _burst_quantities(event):
    """``(duration, central_frequency)`` of a burst event (from its
    ``extra_attributes``, ``None`` where unknown); ``(None, None)`` for a
    CBC one."""
    if event['group'] != 'Burst':
        return None, None
    burst = (event.get('extra_attributes') or {}).get('MultiBurst') or {}
    return burst.get('duration'), burst.get('central_freq')


def event_info(event, significant, skymap, em_bright_json, p_astro_json):
    """The ``event`` of the record for a preferred event."""
    duration, central_frequency = _burst_quantities(event)
    return {
        'time': iso_time(event['gpstime']),
        'far': event['far'],
        'significant': significant,
        'instruments': sorted(
            ifo for ifo in event['instruments'].split(',') if ifo),
        'group': event['group'],
        'pipeline': event['pipeline'],
        'search': event.get('search') or 'AllSky',
        'classification': json.loads(p_astro_json) if p_astro_json else {},
        'properties': json.loads(em_bright_json) if em_bright_json else {},
        'mchirp_source': None,
        'duration': duration,
        'central_frequency': central_frequency,
        'skymap': skymap,
    }


def external_coinc_info(coincidence, combined_skymap):
    """The ``external_coinc`` of the record for a coincidence of
    :func:`gwcelery.external.coincidence.alert_coincidence`."""
    fields = ('gcn_notice_id', 'ivorn', 'observatory', 'search',
              'time_difference', 'time_coincidence_far',
              'time_sky_position_coincidence_far')
    info = {field: coincidence[field] for field in fields}
    info['combined_skymap'] = combined_skymap
    return info


def build(superevent, alert_type, time_created, urls, significant,
          skymap=None, em_bright_json=None, p_astro_json=None,
          coincidence=None, combined_skymap=None):
    """The record of an ``alert_type`` notice of `superevent`, sky maps as
    bytes. A Retraction has the schema's nulls for ``event`` and
    ``external_coinc``."""
    record = {'alert_type': SCHEMA_ALERT_TYPES[alert_type],
              'time_created': time_created,
              'superevent_id': superevent['superevent_id'],
              'urls': urls,
              'event': None,
              'external_coinc': None}
    if alert_type == 'Retraction':
        return record
    record['event'] = event_info(superevent['preferred_event_data'],
                                 significant, skymap, em_bright_json,
                                 p_astro_json)
    if coincidence is not None:
        record['external_coinc'] = external_coinc_info(coincidence,
                                                       combined_skymap)
    return record


def _encode_skymaps(record, encode):
    record = copy.deepcopy(record)
    for part, key in (('event', 'skymap'),
                      ('external_coinc', 'combined_skymap')):
        if record[part] is not None and record[part][key] is not None:
            record[part][key] = encode(record[part][key])
    return record


def json_record(record):
    """The record with its sky maps as base64 text (GCN's form)."""
    return _encode_skymaps(
        record, lambda data: base64.b64encode(data).decode('ascii'))


def validate(record):
    """Check the record against the Avro schema and, in its JSON form,
    against the JSON Schema; raise :class:`InvalidAlert` if it does not
    follow them."""
    try:
        fastavro.validation.validate(record, avro_schema(),
                                     raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        raise InvalidAlert(f'not valid Avro: {exc}') from exc
    try:
        jsonschema.validate(json_record(record), json_schema(),
                            format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as exc:
        raise InvalidAlert(f'not valid JSON: {exc.message}') from exc


def serialize(record, fmt):
    """Bytes of the record in format `fmt`: ``'avro'``, an Avro object
    container file with the package's schema and the one record, or
    ``'json'``, UTF-8 JSON text."""
    if fmt == 'avro':
        buffer = io.BytesIO()
        fastavro.writer(buffer, avro_schema(), [record])
        return buffer.getvalue()
    if fmt == 'json':
        return json.dumps(json_record(record)).encode()
    raise ValueError(f'unknown Kafka alert format {fmt!r}, expected one of '
                     f'{", ".join(FORMATS)}')


def notice_filename(superevent_id, alert_type, fmt):
    """Name of the file that keeps a sent message on the superevent, e.g.
    ``S230101a-preliminary.json``."""
    return f'{superevent_id}-{alert_type.lower()}.{fmt}'
