"""The LVK VOEvent format: VOEvent 2.0 notices of gravitational-wave
candidates, as the LVK sends them to GCN.

This module owns the format: the namespaces, the GCN packet type of each
alert type, the table of the Params (:data:`PARAMS`: data type, UCD, unit
and description of each), and :func:`build`, which writes a notice from
small named parts (``Who``, the alert's Params, the candidate's Params,
the ``GW_SKYMAP``, ``Classification``, ``Properties`` and ``External
Coincidence`` groups, ``WhereWhen``, ``How``). The orchestrator
(:func:`gwcelery.tasks.alerts.build_notice`) and the local GraceDB
server (:func:`gwcelery.gracedb_server.voevent.build_voevent`) both write
their notices with it. :func:`validate` checks a notice against the
VOEvent 2.0 schema, which ships with the package
(``gwcelery/data/VOEvent-v2.0.xsd``, the IVOA schema as distributed with
the Comet VOEvent broker on PyPI).
"""

import dataclasses
import datetime
import functools
from importlib import resources

import lxml.etree

VOEVENT_NAMESPACE = 'http://www.ivoa.net/xml/VOEvent/v2.0'
XSI_NAMESPACE = 'http://www.w3.org/2001/XMLSchema-instance'
SCHEMA_LOCATION = ('http://www.ivoa.net/xml/VOEvent/v2.0 '
                   'http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd')

#: GCN notice type numbers of the LVK alert types.
PACKET_TYPES = {'EarlyWarning': 163, 'Preliminary': 150, 'Initial': 151,
                'Update': 152, 'Retraction': 164}

#: Names of the detectors, for the How section.
INSTRUMENT_NAMES = {
    'H1': 'LIGO Hanford 4 km gravitational wave detector',
    'L1': 'LIGO Livingston 4 km gravitational wave detector',
    'V1': 'Virgo 3 km gravitational wave detector',
    'K1': 'KAGRA 3 km gravitational wave detector',
    'G1': 'GEO 600 gravitational wave detector',
}

AUTHOR = ('LIGO Scientific Collaboration, Virgo Collaboration and KAGRA '
          'Collaboration')


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """How a Param is written, apart from its name and value."""

    data_type: str
    """The ``dataType`` attribute: ``int``, ``float`` or ``string``."""
    ucd: str
    """The Unified Content Descriptor (IVOA) of the value."""
    description: str
    """The text of the Param's ``Description``."""
    unit: str | None = None
    """The ``unit`` attribute, if any."""


def _probability(text):
    return ParamSpec('float', 'stat.probability', text)


#: Every Param of a notice, by name.
PARAMS = {
    'Packet_Type': ParamSpec(
        'int', 'meta.id', 'The Notice Type number is assigned/used within '
        'GCN, e.g. type=150 is an LVC_PRELIMINARY notice'),
    'internal': ParamSpec(
        'int', 'meta.number', 'Indicates whether this event should be '
        'distributed to LSC/Virgo/KAGRA members only'),
    'Pkt_Ser_Num': ParamSpec(
        'int', 'meta.number', 'A number that increments by 1 each time a '
        'new revision is issued for this event'),
    'GraceID': ParamSpec('string', 'meta.id', 'Identifier in GraceDB'),
    'AlertType': ParamSpec('string', 'meta.version', 'VOEvent alert type'),
    'HardwareInj': ParamSpec(
        'int', 'meta.number', 'Indicates that this event is a hardware '
        'injection if 1, no if 0'),
    'OpenAlert': ParamSpec(
        'int', 'meta.number', 'Indicates that this event is an open alert '
        'if 1, no if 0'),
    'EventPage': ParamSpec(
        'string', 'meta.ref.url', 'Web page for evolving status of this GW '
        'candidate'),
    'Instruments': ParamSpec(
        'string', 'meta.code', 'List of instruments used in analysis to '
        'identify this event'),
    'FAR': ParamSpec(
        'float', 'arith.rate;stat.falsealarm', 'False alarm rate for GW '
        'candidates with this strength or greater', unit='Hz'),
    'Group': ParamSpec('string', 'meta.code', 'Data analysis working group'),
    'Pipeline': ParamSpec('string', 'meta.code',
                          'Low-latency data analysis pipeline'),
    'Search': ParamSpec('string', 'meta.code', 'Specific low-latency search'),
    'skymap_fits': ParamSpec('string', 'meta.ref.url', 'Sky Map FITS'),
    'BNS': _probability(
        'Probability that the source is a binary neutron star merger (both '
        'objects lighter than 3 solar masses)'),
    'NSBH': _probability(
        'Probability that the source is a neutron star-black hole merger '
        '(primary heavier than 5 solar masses, secondary lighter than 3 '
        'solar masses)'),
    'BBH': _probability(
        'Probability that the source is a binary black hole merger (both '
        'objects heavier than 5 solar masses)'),
    'Terrestrial': _probability(
        'Probability that the source is terrestrial (i.e., a background '
        'noise fluctuation or a glitch)'),
    'HasNS': _probability(
        'Probability that at least one object in the binary has a mass that '
        'is less than 3 solar masses'),
    'HasRemnant': _probability(
        'Probability that a nonzero mass was ejected outside the central '
        'remnant object'),
    'HasMassGap': _probability(
        'Probability that at least one object in the binary has a mass '
        'between 3 and 5 solar masses'),
    'ExternalGCNNotice': ParamSpec(
        'string', 'meta.id', 'Identifier of the GCN notice of the external '
        'event'),
    'ExternalObservatory': ParamSpec('string', 'meta.code',
                                     'Observatory of the external event'),
    'ExternalSearch': ParamSpec('string', 'meta.code',
                                'Search of the external event'),
    'Time_Difference': ParamSpec(
        'float', 'meta.code', 'Time of the GW candidate minus the time of '
        'the external event', unit='s'),
    'Time_Coincidence_FAR': ParamSpec(
        'float', 'arith.rate;stat.falsealarm', 'False alarm rate of the '
        'coincidence in time', unit='Hz'),
    'Time_Sky_Position_Coincidence_FAR': ParamSpec(
        'float', 'arith.rate;stat.falsealarm', 'False alarm rate of the '
        'coincidence in time and sky position', unit='Hz'),
    'CombinedSkymapFilename': ParamSpec(
        'string', 'meta.ref', 'File of the superevent with the sky map of '
        'the GW candidate combined with that of the external event'),
}

#: The Params of the ``External Coincidence`` group and the keys of the
#: coincidence (see
#: :func:`gwcelery.external.coincidence.alert_coincidence`) they show.
COINCIDENCE_PARAMS = (
    ('ExternalGCNNotice', 'gcn_notice_id'),
    ('ExternalObservatory', 'observatory'),
    ('ExternalSearch', 'search'),
    ('Time_Difference', 'time_difference'),
    ('Time_Coincidence_FAR', 'time_coincidence_far'),
    ('Time_Sky_Position_Coincidence_FAR',
     'time_sky_position_coincidence_far'),
    ('CombinedSkymapFilename', 'combined_skymap_filename'),
)

#: The probability groups of a notice: type, description, Param names.
PROBABILITY_GROUPS = (
    ('Classification',
     'Source classification: binary neutron star (BNS), neutron star-black '
     'hole (NSBH), binary black hole (BBH), or terrestrial (noise)',
     ('BNS', 'NSBH', 'BBH', 'Terrestrial')),
    ('Properties',
     'Qualitative properties of the source, conditioned on the assumption '
     'that the signal is an astrophysical compact binary merger',
     ('HasNS', 'HasRemnant', 'HasMassGap')),
)


@functools.cache
def schema():
    """The VOEvent 2.0 XML schema (:class:`lxml.etree.XMLSchema`)."""
    path = resources.files('gwcelery') / 'data' / 'VOEvent-v2.0.xsd'
    with path.open('rb') as f:
        return lxml.etree.XMLSchema(lxml.etree.parse(f))


def validate(payload):
    """Raise :class:`lxml.etree.DocumentInvalid` unless ``payload``
    (bytes) is a valid VOEvent 2.0 document."""
    schema().assertValid(lxml.etree.fromstring(payload))


def ivorn(prefix, superevent_id, serial_number, alert_type):
    """IVORN of a notice, e.g. ``ivo://gwnet/LVC#S190425z-1-Preliminary``
    (the same name as GraceDB's VOEvent file without ``.xml``)."""
    return f'{prefix}{superevent_id}-{serial_number}-{alert_type}'


def gps_to_iso(gpstime):
    """UTC ISO 8601 time (microseconds, ``Z``) of a GPS time."""
    from astropy.time import Time

    time = Time(gpstime, format='gps', precision=6).utc
    return time.isot + 'Z'


def _param(parent, name, value):
    """Write the Param `name` (see :data:`PARAMS`) with `value`."""
    spec = PARAMS[name]
    attrib = {'name': name, 'dataType': spec.data_type, 'value': str(value),
              'ucd': spec.ucd}
    if spec.unit is not None:
        attrib['unit'] = spec.unit
    param = lxml.etree.SubElement(parent, 'Param', attrib)
    lxml.etree.SubElement(param, 'Description').text = spec.description
    return param


def _root(ivorn, role):
    return lxml.etree.Element(
        lxml.etree.QName(VOEVENT_NAMESPACE, 'VOEvent'),
        {lxml.etree.QName(XSI_NAMESPACE, 'schemaLocation'): SCHEMA_LOCATION,
         'version': '2.0', 'role': role, 'ivorn': ivorn},
        nsmap={'voe': VOEVENT_NAMESPACE, 'xsi': XSI_NAMESPACE})


def _who(root, date):
    who = lxml.etree.SubElement(root, 'Who')
    date = date or datetime.datetime.now(datetime.timezone.utc)
    lxml.etree.SubElement(who, 'Date').text = date.strftime(
        '%Y-%m-%dT%H:%M:%S')
    author = lxml.etree.SubElement(who, 'Author')
    lxml.etree.SubElement(author, 'contactName').text = AUTHOR


def _alert_params(what, alert_type, serial_number, superevent_id,
                  event_page, internal, open_alert, hardware_injection):
    """The Params that every notice has, a retraction too."""
    _param(what, 'Packet_Type', PACKET_TYPES[alert_type])
    _param(what, 'internal', int(bool(internal)))
    _param(what, 'Pkt_Ser_Num', serial_number)
    _param(what, 'GraceID', superevent_id)
    _param(what, 'AlertType', alert_type)
    _param(what, 'HardwareInj', int(bool(hardware_injection)))
    _param(what, 'OpenAlert', int(bool(open_alert)))
    _param(what, 'EventPage', event_page)


def _candidate_params(what, far, instruments, group, pipeline, search):
    """The Params that describe the candidate (none without a FAR)."""
    _param(what, 'Instruments', ','.join(instruments))
    if far is not None:
        _param(what, 'FAR', f'{float(far):.9g}')
    _param(what, 'Group', group)
    _param(what, 'Pipeline', pipeline)
    _param(what, 'Search', search or '')


def _skymap_group(what, skymap_url, skymap_type):
    group = lxml.etree.SubElement(
        what, 'Group', {'type': 'GW_SKYMAP', 'name': skymap_type})
    _param(group, 'skymap_fits', skymap_url)


def _probability_group(what, group_type, description, names, values):
    """A group of probabilities: those of `names` that `values` (a
    mapping, or ``None``) gives; no group if it gives none."""
    present = [name for name in names
               if values is not None and values.get(name) is not None]
    if not present:
        return
    group = lxml.etree.SubElement(what, 'Group', {'type': group_type})
    lxml.etree.SubElement(group, 'Description').text = description
    for name in present:
        _param(group, name, f'{float(values[name]):.6g}')


def _coincidence_group(what, coincidence):
    """The ``External Coincidence`` group: the Params of
    :data:`COINCIDENCE_PARAMS` whose value is known."""
    group = lxml.etree.SubElement(what, 'Group',
                                  {'type': 'External Coincidence'})
    lxml.etree.SubElement(group, 'Description').text = (
        'Properties of the coincidence of the GW candidate with an external '
        'event')
    for name, key in COINCIDENCE_PARAMS:
        value = coincidence.get(key)
        if value is None:
            continue
        if PARAMS[name].data_type == 'float':
            value = f'{float(value):.9g}'
        _param(group, name, value)


def _where_when(root, gpstime):
    where_when = lxml.etree.SubElement(root, 'WhereWhen')
    location = lxml.etree.SubElement(where_when, 'ObsDataLocation')
    lxml.etree.SubElement(location, 'ObservatoryLocation',
                          {'id': 'LIGO Virgo'})
    observation = lxml.etree.SubElement(location, 'ObservationLocation')
    lxml.etree.SubElement(observation, 'AstroCoordSystem',
                          {'id': 'UTC-FK5-GEO'})
    coords = lxml.etree.SubElement(observation, 'AstroCoords',
                                   {'coord_system_id': 'UTC-FK5-GEO'})
    instant = lxml.etree.SubElement(
        lxml.etree.SubElement(coords, 'Time', {'unit': 's'}), 'TimeInstant')
    lxml.etree.SubElement(instant, 'ISOTime').text = gps_to_iso(gpstime)


def _how(root, instruments):
    how = lxml.etree.SubElement(root, 'How')
    for instrument in instruments:
        name = INSTRUMENT_NAMES.get(instrument, 'gravitational wave detector')
        lxml.etree.SubElement(how, 'Description').text = (
            f'{instrument}: {name}')


def build(*, ivorn, superevent_id, alert_type, serial_number, gpstime, far,
          instruments, group, pipeline, search, event_page, role='observation',
          skymap_url=None, skymap_type='bayestar', classification=None,
          properties=None, internal=False, open_alert=True,
          hardware_injection=False, date=None, coincidence=None):
    """Return a VOEvent 2.0 notice (bytes) for a superevent (or event).

    Parameters
    ----------
    ivorn : str
        The notice's IVORN (see :func:`ivorn`).
    superevent_id, alert_type, serial_number
        ``GraceID``, ``AlertType`` (a key of :data:`PACKET_TYPES`) and
        ``Pkt_Ser_Num``.
    gpstime : float
        Time of the candidate.
    far : float or None
        False alarm rate (Hz); ``None`` leaves out the ``FAR`` Param.
    instruments : sequence of str
        Detectors that observed the candidate.
    group, pipeline, search : str
        Of the preferred event.
    event_page : str
        Web page of the superevent.
    role : str
        ``'observation'``, or ``'test'`` for test and MDC superevents.
    skymap_url : str or None
        URL of the FITS sky map; ``None`` leaves out the ``GW_SKYMAP``
        group (a preliminary notice may go out without a sky map).
    skymap_type : str
        The name of the ``GW_SKYMAP`` group (the sky map's kind).
    classification : dict or None
        ``{'BNS', 'NSBH', 'BBH', 'Terrestrial'}`` probabilities.
    properties : dict or None
        ``{'HasNS', 'HasRemnant'[, 'HasMassGap']}`` probabilities.
    internal, open_alert, hardware_injection : bool
        The ``internal``, ``OpenAlert`` and ``HardwareInj`` flags.
    date : datetime.datetime or None
        Time of writing (default: now).
    coincidence : dict or None
        The external coincidence of a ``RAVEN_ALERT`` superevent (keys of
        :data:`COINCIDENCE_PARAMS`): an ``External Coincidence`` group.

    A ``Retraction`` has only the Params of the alert: it describes no
    candidate, sky map or classification.
    """
    if alert_type not in PACKET_TYPES:
        raise ValueError(f'unknown alert type {alert_type!r}')
    root = _root(ivorn, role)
    _who(root, date)
    what = lxml.etree.SubElement(root, 'What')
    _alert_params(what, alert_type, serial_number, superevent_id,
                  event_page, internal, open_alert, hardware_injection)
    if alert_type != 'Retraction':
        _candidate_params(what, far, instruments, group, pipeline, search)
        if skymap_url is not None:
            _skymap_group(what, skymap_url, skymap_type)
        for (group_type, description, names), values in zip(
                PROBABILITY_GROUPS, (classification, properties),
                strict=True):
            _probability_group(what, group_type, description, names, values)
        if coincidence is not None:
            _coincidence_group(what, coincidence)
    _where_when(root, gpstime)
    _how(root, instruments)
    lxml.etree.SubElement(root, 'Description').text = (
        'Report of a candidate gravitational wave event')
    return lxml.etree.tostring(root, xml_declaration=True, encoding='UTF-8',
                               pretty_print=True)
