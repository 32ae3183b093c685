"""Parsing of the GCN notices of external triggers (no services)."""

import os

import pytest

from gwcelery.external import notices
from gwcelery.external.notices import NoticeError

from .conftest import DATA_DIR

GCN_DATA = os.path.join(DATA_DIR, 'gcn')


def read(name):
    with open(os.path.join(GCN_DATA, name), 'rb') as f:
        return f.read()


def gps_from_tjd(tjd, sod, leap_seconds=18):
    """GPS time from GCN's truncated Julian day and seconds of day, by hand:
    TJD = MJD - 40000, the GPS epoch is MJD 44244, and GPS - UTC was 18 s
    from 2017 on."""
    return (tjd + 40000 - 44244) * 86400 + sod + leap_seconds


# name: (pipeline, search, trigger id, gpstime, (ra, dec, radius), role,
#        not_grb, notice type)
EXPECTED = {
    'fermi_grb_gcn.xml': (
        'Fermi', 'GRB', '548848711', gps_from_tjd(18262, 35906.31),
        (140.05, -39.0499, 5.6), 'observation', False, 115),
    'fermi_initial_grb_gcn.xml': (
        'Fermi', 'GRB', '548841234', gps_from_tjd(18262, 35906.31),
        None, 'observation', False, 110),
    'fermi_noise_gcn.xml': (
        'Fermi', 'GRB', '598032876', gps_from_tjd(18831, 58471.55),
        (222.7167, 81.1667, 32.7833), 'observation', True, 111),
    'fermi_subthresh_grb_gcn.xml': (
        # ISOTime is rounded to 10 ms; Trans_SOD is 58588.215999.
        'Fermi', 'SubGRB', '578679123', gps_from_tjd(18607, 58588.22),
        (143.53, 38.0799, 10.49), 'observation', False, 131),
    'snews_gcn.xml': (
        'SNEWS', 'Supernova', '1000194', gps_from_tjd(18379, 57601.0),
        None, 'observation', False, 149),
    'snews_gcn_test.xml': (
        'SNEWS', 'Supernova', '1000194', gps_from_tjd(18379, 57601.0),
        None, 'test', False, 149),
    'swift_grb_gcn.xml': (
        'Swift', 'GRB', '1123129', gps_from_tjd(19829, 50725.76),
        (268.87, -20.3153, 0.05), 'observation', False, 61),
}


def test_every_sample_is_covered():
    assert sorted(EXPECTED) == sorted(
        name for name in os.listdir(GCN_DATA) if name.endswith('.xml'))


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_parse_sample(name):
    (pipeline, search, trigger_id, gpstime, position, role, not_grb,
     notice_type) = EXPECTED[name]
    notice = notices.parse(read(name))
    assert notice.pipeline == pipeline
    assert notice.search == search
    assert notice.trigger_id == trigger_id
    assert notice.gpstime == pytest.approx(gpstime, abs=1e-6)
    assert isinstance(notice.gpstime, float)
    assert notice.role == role
    assert notice.test is (role == 'test')
    assert notice.group == ('Test' if role == 'test' else 'External')
    assert notice.not_grb is not_grb
    assert notice.notice_type == notice_type
    assert notice.ivorn.startswith('ivo://nasa.gsfc.gcn/')
    if position is None:
        assert not notice.has_position
        assert (notice.ra, notice.dec, notice.error_radius) == (
            None, None, None)
    else:
        assert notice.has_position
        assert (notice.ra, notice.dec, notice.error_radius) == pytest.approx(
            position)


def test_fermi_noise_classification():
    notice = notices.parse(read('fermi_noise_gcn.xml'))
    assert notice.classification == 'terrestrial gamma-ray flash (100%)'
    assert notice.not_grb


def test_fermi_grb_classification_below_half_is_not_a_grb():
    payload = read('fermi_noise_gcn.xml').replace(
        b'name="Most_Likely_Index"     value="19"',
        b'name="Most_Likely_Index"     value="4"')
    assert not notices.parse(payload).not_grb
    payload = payload.replace(b'name="Most_Likely_Prob"      value="100"',
                              b'name="Most_Likely_Prob"      value="30"')
    notice = notices.parse(payload)
    assert notice.classification == 'GRB (30%)'
    assert notice.not_grb


def test_def_not_a_grb_flag():
    payload = read('swift_grb_gcn.xml').replace(
        b'name="Def_NOT_a_GRB"            value="false"',
        b'name="Def_NOT_a_GRB"            value="true"')
    assert notices.parse(payload).not_grb


def test_notice_date_orders_updates():
    assert notices.parse(read('fermi_grb_gcn.xml')).date == (
        '2018-05-24T18:35:45')


@pytest.mark.parametrize('payload,message', [
    (b'', 'not well-formed XML'),
    (b'<voe:VOEvent', 'not well-formed XML'),
    (read('swift_grb_gcn.xml')[:3000], 'not well-formed XML'),
    (b'<VOEvent><What/></VOEvent>', 'no Packet_Type'),
    (read('swift_grb_gcn.xml').replace(b'value="61"', b'value="xx"', 1),
     "unknown Packet_Type 'xx'"),
    (read('swift_grb_gcn.xml').replace(b'value="61"', b'value="62"', 1),
     'SWIFT_BAT_GRB_POS_NACK is not an external trigger notice'),
    (read('swift_grb_gcn.xml').replace(b'name="TrigID"', b'name="X"'),
     'has no trigger number'),
    (read('swift_grb_gcn.xml').replace(b'<ISOTime>2022-09-07T14:05:25.76Z',
                                       b'<ISOTime>yesterday'),
     "bad trigger time 'yesterday'"),
    (read('swift_grb_gcn.xml').replace(b'<C2>-20.3153</C2>', b'<C2>x</C2>'),
     "declination is not a number: 'x'"),
    (read('swift_grb_gcn.xml').replace(b'<C2>-20.3153</C2>', b'<C2>95</C2>'),
     'position out of range'),
])
def test_malformed_notices(payload, message):
    with pytest.raises(NoticeError, match=message):
        notices.parse(payload)
