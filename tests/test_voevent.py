"""The VOEvent 2.0 builder, validated against the shipped XSD."""

import datetime
import os

import lxml.etree
import pytest

from gwcelery import voevent

from .conftest import DATA_DIR

PARAMS = dict(
    ivorn='ivo://gwnet/LVC#S190425z-1-Preliminary',
    superevent_id='S190425z', alert_type='Preliminary', serial_number=1,
    gpstime=1240215503.017, far=4.5e-13, instruments=['L1', 'V1'],
    group='CBC', pipeline='gstlal', search='AllSky',
    event_page='https://example.org/superevents/S190425z/view/',
    skymap_url='https://example.org/api/superevents/S190425z/files/'
               'bayestar.multiorder.fits,0',
    classification={'BNS': 0.999, 'NSBH': 0.0, 'BBH': 0.0,
                    'Terrestrial': 0.001},
    properties={'HasNS': 1.0, 'HasRemnant': 0.9, 'HasMassGap': 0.0},
    date=datetime.datetime(2019, 4, 25, 8, 18, 45))


def params_of(payload):
    root = lxml.etree.fromstring(payload)
    return {param.get('name'): param.get('value')
            for param in root.iter('Param')}


def test_schema_accepts_real_notices():
    """The shipped schema accepts the LVK's own notice and NASA's."""
    for path in (os.path.join(DATA_DIR, 'gracedb', 'G298048-1-Initial.xml'),
                 os.path.join(DATA_DIR, 'gcn', 'fermi_grb_gcn.xml')):
        with open(path, 'rb') as f:
            voevent.validate(f.read())


def test_schema_rejects_invalid():
    with open(os.path.join(DATA_DIR, 'gracedb',
                           'G298048-1-Initial.xml'), 'rb') as f:
        payload = f.read()
    with pytest.raises(lxml.etree.DocumentInvalid):
        voevent.validate(payload.replace(b'role="observation"',
                                         b'role="rumour"'))
    with pytest.raises(lxml.etree.DocumentInvalid):
        voevent.validate(payload.replace(b'version="2.0"', b''))


def test_preliminary_notice_is_valid_and_complete():
    payload = voevent.build(**PARAMS)
    voevent.validate(payload)
    root = lxml.etree.fromstring(payload)
    assert root.tag == '{http://www.ivoa.net/xml/VOEvent/v2.0}VOEvent'
    assert root.get('ivorn') == 'ivo://gwnet/LVC#S190425z-1-Preliminary'
    assert root.get('role') == 'observation'
    params = params_of(payload)
    assert params['GraceID'] == 'S190425z'
    assert params['AlertType'] == 'Preliminary'
    assert params['Packet_Type'] == '150'
    assert params['Pkt_Ser_Num'] == '1'
    assert float(params['FAR']) == pytest.approx(4.5e-13)
    assert params['Instruments'] == 'L1,V1'
    assert (params['Group'], params['Pipeline'], params['Search']) == (
        'CBC', 'gstlal', 'AllSky')
    assert params['skymap_fits'] == PARAMS['skymap_url']
    assert float(params['BNS']) == pytest.approx(0.999)
    assert float(params['Terrestrial']) == pytest.approx(0.001)
    assert float(params['HasNS']) == 1.0
    assert float(params['HasRemnant']) == pytest.approx(0.9)
    assert root.find('Who/Date').text == '2019-04-25T08:18:45'
    iso = root.find('WhereWhen/ObsDataLocation/ObservationLocation/'
                    'AstroCoords/Time/TimeInstant/ISOTime').text
    assert iso == '2019-04-25T08:18:05.017000Z'
    groups = {group.get('type') for group in root.iter('Group')}
    assert groups == {'GW_SKYMAP', 'Classification', 'Properties'}


def test_notice_without_skymap_or_classification():
    """A burst, or a preliminary whose localisation failed."""
    payload = voevent.build(**dict(
        PARAMS, skymap_url=None, classification=None, properties=None,
        group='Burst', pipeline='CWB', search=None, role='test'))
    voevent.validate(payload)
    root = lxml.etree.fromstring(payload)
    assert root.get('role') == 'test'
    assert list(root.iter('Group')) == []
    params = params_of(payload)
    assert 'skymap_fits' not in params and 'HasNS' not in params
    assert params['Search'] == ''


def test_unknown_alert_type():
    with pytest.raises(ValueError, match='Rumour'):
        voevent.build(**dict(PARAMS, alert_type='Rumour'))


def test_ivorn():
    assert voevent.ivorn('ivo://gwnet/LVC#', 'S1', 2, 'Update') == \
        'ivo://gwnet/LVC#S1-2-Update'
