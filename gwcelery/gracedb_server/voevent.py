"""The LVK VOEvent XML document that the server writes for a VOEvent
record, in the format of GraceDB's notices (see ``G298048-1-Initial.xml``).
"""

import datetime

from lxml import etree

from .identifiers import gps_to_utc

VOEVENT_NAMESPACE = 'http://www.ivoa.net/xml/VOEvent/v2.0'
XSI_NAMESPACE = 'http://www.w3.org/2001/XMLSchema-instance'

#: GCN notice type numbers (``Packet_Type``) by VOEvent type.
PACKET_TYPES = {'EW': 163, 'PR': 150, 'IN': 151, 'UP': 152, 'RE': 164}

ALERT_TYPES = {'EW': 'EarlyWarning', 'PR': 'Preliminary', 'IN': 'Initial',
               'UP': 'Update', 'RE': 'Retraction'}

INSTRUMENT_DESCRIPTIONS = {
    'H1': 'H1: LIGO Hanford 4 km gravitational wave detector',
    'L1': 'L1: LIGO Livingston 4 km gravitational wave detector',
    'V1': 'V1: Virgo 3 km gravitational wave detector',
    'K1': 'K1: KAGRA 3 km gravitational wave detector'}

CLASSIFICATION = (('prob_bns', 'BNS', 'Probability that the source is a '
                   'binary neutron star merger'),
                  ('prob_nsbh', 'NSBH', 'Probability that the source is a '
                   'neutron star-black hole merger'),
                  ('prob_bbh', 'BBH', 'Probability that the source is a '
                   'binary black hole merger'),
                  ('prob_terrestrial', 'Terrestrial', 'Probability that the '
                   'source is terrestrial (i.e., a background noise '
                   'fluctuation or a glitch)'))

PROPERTIES = (('prob_has_ns', 'HasNS', 'Probability that at least one '
               'object in the binary has a mass that is less than 3 solar '
               'masses'),
              ('prob_has_remnant', 'HasRemnant', 'Probability that a '
               'nonzero mass was ejected outside the central remnant object'),
              ('prob_mass_gap', 'HasMassGap', 'Probability that at least one '
               'object in the binary has a mass between 3 and 5 solar masses'))


def _param(parent, name, value, data_type='string', ucd=None, unit=None,
           description=None):
    param = etree.SubElement(parent, 'Param', name=name, dataType=data_type,
                             value=str(value))
    if ucd:
        param.set('ucd', ucd)
    if unit is not None:
        param.set('unit', unit)
    if description:
        etree.SubElement(param, 'Description').text = description
    return param


def _page_url(api_root, object_id, superevent):
    base = api_root.rsplit('/api/', 1)[0]
    kind = 'superevents' if superevent else 'events'
    return f'{base}/{kind}/{object_id}/view/'


def build_voevent(record, event, object_id, api_root, subject=None):
    """Return the XML bytes of the VOEvent ``record`` about ``object_id``.

    ``event`` is the (preferred) event dict; ``subject`` the superevent dict
    for superevent VOEvents.
    """
    voevent_type = record['voevent_type']
    test = event['group'] == 'Test' or event['search'] == 'MDC'
    root = etree.Element(
        f'{{{VOEVENT_NAMESPACE}}}VOEvent',
        nsmap={'voe': VOEVENT_NAMESPACE, 'xsi': XSI_NAMESPACE},
        version='2.0', role='test' if test else 'observation',
        ivorn=record['ivorn'])
    root.set(f'{{{XSI_NAMESPACE}}}schemaLocation',
             f'{VOEVENT_NAMESPACE} '
             'http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd')

    who = etree.SubElement(root, 'Who')
    etree.SubElement(who, 'Date').text = datetime.datetime.now(
        datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')
    author = etree.SubElement(who, 'Author')
    etree.SubElement(author, 'contactName').text = (
        'LIGO Scientific Collaboration, Virgo Collaboration, and KAGRA '
        'Collaboration')

    what = etree.SubElement(root, 'What')
    _param(what, 'internal', int(record['internal']), 'int',
           description='Indicates whether this event should be distributed '
           'to LSC/Virgo/KAGRA members only')
    _param(what, 'Packet_Type', PACKET_TYPES[voevent_type], 'int',
           description='The Notice Type number is assigned/used within GCN')
    _param(what, 'Pkt_Ser_Num', record['N'])
    _param(what, 'GraceID', object_id, ucd='meta.id',
           description='Identifier in GraceDB')
    _param(what, 'AlertType', ALERT_TYPES[voevent_type], ucd='meta.version',
           unit='', description='VOEvent alert type')
    _param(what, 'HardwareInj', int(record['hardware_inj']), 'int',
           ucd='meta.number', unit='', description='Indicates that this '
           'event is a hardware injection if 1, no if 0')
    _param(what, 'OpenAlert', int(record['open_alert']), 'int',
           ucd='meta.number', unit='', description='Indicates that this '
           'event is an open alert if 1, no if 0')
    _param(what, 'EventPage', _page_url(api_root, object_id, subject),
           ucd='meta.ref.url', description='Web page for evolving status of '
           'this GW candidate')
    if voevent_type != 'RE':
        _param(what, 'Instruments', event['instruments'], ucd='meta.code',
               description='List of instruments used in analysis to '
               'identify this event')
        if event['far'] is not None:
            _param(what, 'FAR', repr(event['far']), 'float',
                   ucd='arith.rate;stat.falsealarm', unit='Hz',
                   description='False alarm rate for GW candidates with '
                   'this strength or greater')
        _param(what, 'Group', event['group'], ucd='meta.code',
               description='Data analysis working group')
        _param(what, 'Pipeline', event['pipeline'], ucd='meta.code',
               description='Low-latency data analysis pipeline')
        if event['search']:
            _param(what, 'Search', event['search'], ucd='meta.code',
                   description='Specific low-latency search')
        if record.get('skymap_filename'):
            group = etree.SubElement(what, 'Group', type='GW_SKYMAP',
                                     name=record['skymap_type'])
            kind = 'superevents' if subject else 'events'
            _param(group, 'skymap_fits',
                   f"{api_root}{kind}/{object_id}/files/"
                   f"{record['skymap_filename']}", ucd='meta.ref.url',
                   description='Sky map FITS')
        for table, name in ((CLASSIFICATION, 'Classification'),
                            (PROPERTIES, 'Properties')):
            values = [(key, label, text) for key, label, text in table
                      if record.get(key) is not None]
            if values:
                group = etree.SubElement(what, 'Group', type=name)
                for key, label, text in values:
                    _param(group, label, record[key], 'float',
                           ucd='stat.probability', description=text)

    where_when = etree.SubElement(root, 'WhereWhen')
    location = etree.SubElement(where_when, 'ObsDataLocation')
    etree.SubElement(location, 'ObservatoryLocation', id='LIGO Virgo')
    observation = etree.SubElement(location, 'ObservationLocation')
    etree.SubElement(observation, 'AstroCoordSystem', id='UTC-FK5-GEO')
    coords = etree.SubElement(observation, 'AstroCoords',
                              coord_system_id='UTC-FK5-GEO')
    instant = etree.SubElement(etree.SubElement(coords, 'Time'),
                               'TimeInstant')
    gpstime = subject['t_0'] if subject else event['gpstime']
    etree.SubElement(instant, 'ISOTime').text = gps_to_utc(gpstime).strftime(
        '%Y-%m-%dT%H:%M:%S.%fZ')

    how = etree.SubElement(root, 'How')
    etree.SubElement(how, 'Description').text = (
        'Candidate gravitational wave event identified by low-latency '
        'analysis')
    for ifo in filter(None, event['instruments'].split(',')):
        if ifo in INSTRUMENT_DESCRIPTIONS:
            etree.SubElement(how, 'Description').text = \
                INSTRUMENT_DESCRIPTIONS[ifo]
    etree.SubElement(root, 'Description').text = (
        'Report of a candidate gravitational wave event')
    return etree.tostring(root, xml_declaration=True, encoding='UTF-8',
                          pretty_print=True)
