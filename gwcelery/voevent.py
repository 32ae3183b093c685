"""VOEvent 2.0 notices of gravitational-wave candidates, as the LVK sends
them to GCN.

:func:`build` writes a notice with the same Params as the LVK's
(``GraceID``, ``AlertType``, ``FAR``, ``Instruments``, ``Group``,
``Pipeline``, ``Search``, the ``GW_SKYMAP`` group with ``skymap_fits``,
the ``Classification`` group with ``BNS``/``NSBH``/``BBH``/``Terrestrial``
and the ``Properties`` group with ``HasNS``/``HasRemnant``/``HasMassGap``).
:func:`validate` checks a notice against the VOEvent 2.0 schema, which
ships with the package (``gwcelery/data/VOEvent-v2.0.xsd``, the IVOA
schema as distributed with the Comet VOEvent broker on PyPI).
"""

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


def _param(parent, name, value, data_type, ucd, description, unit=None):
    attrib = {'name': name, 'dataType': data_type, 'value': str(value),
              'ucd': ucd}
    if unit is not None:
        attrib['unit'] = unit
    param = lxml.etree.SubElement(parent, 'Param', attrib)
    lxml.etree.SubElement(param, 'Description').text = description
    return param


def _probability(value):
    return f'{float(value):.6g}'


def build(*, ivorn, superevent_id, alert_type, serial_number, gpstime, far,
          instruments, group, pipeline, search, event_page, role='observation',
          skymap_url=None, skymap_type='bayestar', classification=None,
          properties=None, internal=False, open_alert=True,
          hardware_injection=False, date=None):
    """Return a VOEvent 2.0 notice (bytes) for a superevent.

    Parameters
    ----------
    ivorn : str
        The notice's IVORN (see :func:`ivorn`).
    superevent_id, alert_type, serial_number
        ``GraceID``, ``AlertType`` (a key of :data:`PACKET_TYPES`) and
        ``Pkt_Ser_Num``.
    gpstime : float
        Time of the candidate.
    far : float
        False alarm rate (Hz).
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
    classification : dict or None
        ``{'BNS', 'NSBH', 'BBH', 'Terrestrial'}`` probabilities.
    properties : dict or None
        ``{'HasNS', 'HasRemnant'[, 'HasMassGap']}`` probabilities.
    date : datetime.datetime or None
        Time of writing (default: now).
    """
    if alert_type not in PACKET_TYPES:
        raise ValueError(f'unknown alert type {alert_type!r}')
    nsmap = {'voe': VOEVENT_NAMESPACE, 'xsi': XSI_NAMESPACE}
    root = lxml.etree.Element(
        lxml.etree.QName(VOEVENT_NAMESPACE, 'VOEvent'),
        {lxml.etree.QName(XSI_NAMESPACE, 'schemaLocation'): SCHEMA_LOCATION,
         'version': '2.0', 'role': role, 'ivorn': ivorn},
        nsmap=nsmap)

    who = lxml.etree.SubElement(root, 'Who')
    date = date or datetime.datetime.now(datetime.timezone.utc)
    lxml.etree.SubElement(who, 'Date').text = date.strftime(
        '%Y-%m-%dT%H:%M:%S')
    author = lxml.etree.SubElement(who, 'Author')
    lxml.etree.SubElement(author, 'contactName').text = (
        'LIGO Scientific Collaboration, Virgo Collaboration and KAGRA '
        'Collaboration')

    what = lxml.etree.SubElement(root, 'What')
    _param(what, 'Packet_Type', PACKET_TYPES[alert_type], 'int', 'meta.id',
           'The Notice Type number is assigned/used within GCN, e.g. '
           'type=150 is an LVC_PRELIMINARY notice')
    _param(what, 'internal', int(bool(internal)), 'int', 'meta.number',
           'Indicates whether this event should be distributed to '
           'LSC/Virgo/KAGRA members only')
    _param(what, 'Pkt_Ser_Num', serial_number, 'int', 'meta.number',
           'A number that increments by 1 each time a new revision is '
           'issued for this event')
    _param(what, 'GraceID', superevent_id, 'string', 'meta.id',
           'Identifier in GraceDB')
    _param(what, 'AlertType', alert_type, 'string', 'meta.version',
           'VOEvent alert type')
    _param(what, 'HardwareInj', int(bool(hardware_injection)), 'int',
           'meta.number',
           'Indicates that this event is a hardware injection if 1, no if 0')
    _param(what, 'OpenAlert', int(bool(open_alert)), 'int', 'meta.number',
           'Indicates that this event is an open alert if 1, no if 0')
    _param(what, 'EventPage', event_page, 'string', 'meta.ref.url',
           'Web page for evolving status of this GW candidate')
    _param(what, 'Instruments', ','.join(instruments), 'string',
           'meta.code',
           'List of instruments used in analysis to identify this event')
    _param(what, 'FAR', f'{float(far):.9g}', 'float',
           'arith.rate;stat.falsealarm',
           'False alarm rate for GW candidates with this strength or '
           'greater', unit='Hz')
    _param(what, 'Group', group, 'string', 'meta.code',
           'Data analysis working group')
    _param(what, 'Pipeline', pipeline, 'string', 'meta.code',
           'Low-latency data analysis pipeline')
    _param(what, 'Search', search or '', 'string', 'meta.code',
           'Specific low-latency search')

    if skymap_url is not None:
        skymap_group = lxml.etree.SubElement(
            what, 'Group', {'type': 'GW_SKYMAP', 'name': skymap_type})
        _param(skymap_group, 'skymap_fits', skymap_url, 'string',
               'meta.ref.url', 'Sky Map FITS')

    if classification is not None:
        classification_group = lxml.etree.SubElement(
            what, 'Group', {'type': 'Classification'})
        lxml.etree.SubElement(classification_group, 'Description').text = (
            'Source classification: binary neutron star (BNS), neutron '
            'star-black hole (NSBH), binary black hole (BBH), or '
            'terrestrial (noise)')
        for key, text in (
                ('BNS', 'Probability that the source is a binary neutron '
                        'star merger (both objects lighter than 3 solar '
                        'masses)'),
                ('NSBH', 'Probability that the source is a neutron '
                         'star-black hole merger (primary heavier than 5 '
                         'solar masses, secondary lighter than 3 solar '
                         'masses)'),
                ('BBH', 'Probability that the source is a binary black '
                        'hole merger (both objects heavier than 5 solar '
                        'masses)'),
                ('Terrestrial', 'Probability that the source is '
                                'terrestrial (i.e., a background noise '
                                'fluctuation or a glitch)')):
            _param(classification_group, key,
                   _probability(classification[key]), 'float',
                   'stat.probability', text)

    if properties is not None:
        properties_group = lxml.etree.SubElement(
            what, 'Group', {'type': 'Properties'})
        lxml.etree.SubElement(properties_group, 'Description').text = (
            'Qualitative properties of the source, conditioned on the '
            'assumption that the signal is an astrophysical compact binary '
            'merger')
        for key, text in (
                ('HasNS', 'Probability that at least one object in the '
                          'binary has a mass that is less than 3 solar '
                          'masses'),
                ('HasRemnant', 'Probability that a nonzero mass was '
                               'ejected outside the central remnant '
                               'object'),
                ('HasMassGap', 'Probability that at least one object in '
                               'the binary has a mass between 3 and 5 '
                               'solar masses')):
            if key in properties:
                _param(properties_group, key, _probability(properties[key]),
                       'float', 'stat.probability', text)

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

    how = lxml.etree.SubElement(root, 'How')
    for instrument in instruments:
        name = INSTRUMENT_NAMES.get(instrument, 'gravitational wave detector')
        lxml.etree.SubElement(how, 'Description').text = (
            f'{instrument}: {name}')

    lxml.etree.SubElement(root, 'Description').text = (
        'Report of a candidate gravitational wave event')
    return lxml.etree.tostring(root, xml_declaration=True, encoding='UTF-8',
                               pretty_print=True)
