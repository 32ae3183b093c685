"""Parsing of the GCN notices of external triggers and the reference
pipeline's rules on them (no services).

The samples in ``tests/data/gcn/`` are real notices as GCN sent them. Those
in ``tests/data/gcn/built/`` are BUILT for these tests, for the notice types
with no real sample here, with the Param names of GCN's public VOEvent
formats: the Fermi GBM ground position (from the real final-position
notice), a Fermi GBM sub-threshold candidate of Reliability 2 (from the real
sub-threshold notice), the Swift BAT quick-look position (from the real BAT
position notice), the four INTEGRAL types (SPI-ACS, wakeup, refined,
offline; ``TrigID`` 0 and the trigger number in the IVORN, as INTEGRAL sends
them) and the AGILE MCAL alert (a position with a zero error radius).
"""

import os

import lxml.etree
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
    'built/agile_mcal_gcn.xml': (
        'AGILE', 'GRB', '705604946', gps_from_tjd(20075, 58928.45),
        (148.888, 69.065, 0.0), 'observation', False, 105),
    'built/fermi_gnd_pos_gcn.xml': (
        'Fermi', 'GRB', '705569475', gps_from_tjd(20075, 27070.52),
        (287.51, 12.23, 7.81), 'observation', False, 112),
    'built/fermi_subthresh_low_reliability_gcn.xml': (
        'Fermi', 'SubGRB', '705579758', gps_from_tjd(20075, 36153.41),
        (143.53, 38.0799, 10.49), 'observation', False, 131),
    'built/integral_offline_gcn.xml': (
        'INTEGRAL', 'GRB', '9123', gps_from_tjd(20075, 54576.80),
        (201.365, -43.019, 0.03), 'observation', False, 55),
    'built/integral_refined_gcn.xml': (
        'INTEGRAL', 'GRB', '9122', gps_from_tjd(20075, 50653.66),
        (83.633, 22.014, 0.04), 'observation', False, 54),
    'built/integral_spiacs_gcn.xml': (
        'INTEGRAL', 'GRB', '9120', gps_from_tjd(20075, 43241.25),
        None, 'observation', False, 52),
    'built/integral_wakeup_gcn.xml': (
        'INTEGRAL', 'GRB', '9121', gps_from_tjd(20075, 46910.07),
        (266.417, -29.008, 0.05), 'observation', False, 53),
    'built/swift_ql_pos_gcn.xml': (
        'Swift', 'GRB', '1167705', gps_from_tjd(20075, 41998.12),
        (84.331, -5.612, 0.05), 'observation', False, 97),
    'fermi_grb_gcn.xml': (
        'Fermi', 'GRB', '548848711', gps_from_tjd(18262, 35906.31),
        (140.05, -39.0499, 5.6), 'observation', False, 115),
    'fermi_initial_grb_gcn.xml': (
        'Fermi', 'GRB', '548841234', gps_from_tjd(18262, 35906.31),
        None, 'observation', True, 110),
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


def sample_names():
    """Every sample, real and built, by its path under tests/data/gcn."""
    return sorted(
        os.path.relpath(os.path.join(directory, name), GCN_DATA)
        for directory, _, names in os.walk(GCN_DATA)
        for name in names if name.endswith('.xml'))


def test_every_sample_is_covered():
    assert sorted(EXPECTED) == sample_names()


def test_every_notice_type_has_a_sample():
    assert {expected[-1] for expected in EXPECTED.values()} == set(
        notices.PIPELINE_AND_SEARCH)


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


# --- the reference pipeline's rules ----------------------------------------


def with_param(payload, name, value):
    """`payload` with the value of its Param `name` replaced."""
    root = lxml.etree.fromstring(payload)
    root.find(f".//Param[@name='{name}']").set('value', str(value))
    return lxml.etree.tostring(root)


@pytest.mark.parametrize('reliability,dropped', [
    (0, True), (2, True), (4, True), (5, False), (8, False), (9, False)])
def test_low_reliability_subthreshold_notices_are_dropped(reliability,
                                                          dropped):
    notice = notices.parse(with_param(
        read('fermi_subthresh_grb_gcn.xml'), 'Reliability', reliability))
    assert notice.reliability == reliability
    reason = notices.reason_to_drop(notice)
    if dropped:
        assert reason == f'low reliability: Reliability {reliability} <= 4'
    else:
        assert reason is None


def test_built_low_reliability_sample_is_dropped():
    notice = notices.parse(
        read('built/fermi_subthresh_low_reliability_gcn.xml'))
    assert 'Reliability 2 <= 4' in notices.reason_to_drop(notice)


def test_bad_reliability_is_rejected():
    with pytest.raises(NoticeError, match="bad Reliability 'high'"):
        notices.parse(with_param(read('fermi_subthresh_grb_gcn.xml'),
                                 'Reliability', 'high'))


@pytest.mark.parametrize('name', [
    'fermi_grb_gcn.xml', 'snews_gcn.xml', 'swift_grb_gcn.xml',
    'built/agile_mcal_gcn.xml', 'built/integral_refined_gcn.xml'])
def test_notices_without_reliability_are_kept(name):
    notice = notices.parse(read(name))
    assert notice.reliability is None
    assert notices.reason_to_drop(notice) is None


def test_test_notices_are_kept_for_the_test_group():
    notice = notices.parse(read('snews_gcn_test.xml'))
    assert notices.reason_to_drop(notice) is None
    assert notice.group == 'Test'


def test_utility_notices_are_dropped():
    payload = read('swift_grb_gcn.xml').replace(
        b'role="observation"', b'role="utility"')
    assert notices.reason_to_drop(notices.parse(payload)) == (
        "VOEvent role 'utility'")


@pytest.mark.parametrize('name,edit,reason', [
    ('fermi_initial_grb_gcn.xml', None,
     'first Fermi GBM alert, not yet classified'),
    ('fermi_noise_gcn.xml', None,
     'Fermi GBM classifies it as terrestrial gamma-ray flash (100%)'),
    ('swift_grb_gcn.xml',
     (b'name="StarTrack_Lost_Lock"      value="false"',
      b'name="StarTrack_Lost_Lock"      value="true"'),
     'Swift lost its star tracker lock (StarTrack_Lost_Lock)'),
    ('swift_grb_gcn.xml',
     (b'name="Def_NOT_a_GRB"            value="false"',
      b'name="Def_NOT_a_GRB"            value="true"'),
     'the notice retracts it (Def_NOT_a_GRB)'),
    ('fermi_grb_gcn.xml', None, None),
    ('swift_grb_gcn.xml', None, None),
    ('built/agile_mcal_gcn.xml', None, None),
])
def test_not_grb_reasons(name, edit, reason):
    payload = read(name)
    if edit is not None:
        assert edit[0] in payload
        payload = payload.replace(*edit)
    notice = notices.parse(payload)
    assert notice.not_grb_reason == reason
    assert notice.not_grb is (reason is not None)


def test_integral_trigger_number_comes_from_the_ivorn():
    payload = read('built/integral_refined_gcn.xml')
    assert b'name="TrigID"        value="0"' in payload
    notice = notices.parse(payload)
    assert notice.trigger_id == '9122'
    recorded = notices.recorded_payload(payload, notice)
    assert recorded != payload
    again = notices.parse(recorded)
    assert again.trigger_id == '9122'
    assert notices.recorded_payload(recorded, again) == recorded
    root = lxml.etree.fromstring(recorded)
    assert root.find(".//Param[@name='TrigID']").get('value') == '9122'
    # Nothing else changed.
    root.find(".//Param[@name='TrigID']").set('value', '0')
    assert lxml.etree.tostring(root) == lxml.etree.tostring(
        lxml.etree.fromstring(payload))


def test_integral_ivorn_without_a_number_keeps_trigid():
    payload = with_param(read('built/integral_refined_gcn.xml'),
                         'TrigID', 77).replace(
        b'#Refined_Pos_9122-0-103', b'#Refined_Pos_replay')
    notice = notices.parse(payload)
    assert notice.trigger_id == '77'
    assert notices.recorded_payload(payload, notice) == payload


def test_other_notices_are_recorded_as_received():
    for name in ('fermi_grb_gcn.xml', 'fermi_subthresh_grb_gcn.xml',
                 'built/agile_mcal_gcn.xml'):
        payload = read(name)
        assert notices.recorded_payload(
            payload, notices.parse(payload)) == payload


def test_mock_data_challenge_notices_get_the_mdc_search():
    payload = read('fermi_grb_gcn.xml').replace(
        b'ivorn="ivo://nasa.gsfc.gcn/Fermi#',
        b'ivorn="ivo://nasa.gsfc.gcn/Fermi#MDC-test_event_')
    assert notices.parse(payload).search == 'MDC'


def with_position(payload, ra, dec, radius):
    where = './/Position2D'
    root = lxml.etree.fromstring(payload)
    root.find(f'{where}/Value2/C1').text = ra
    root.find(f'{where}/Value2/C2').text = dec
    root.find(f'{where}/Error2Radius').text = radius
    return lxml.etree.tostring(root)


@pytest.mark.parametrize('position,expected', [
    (('0.0', '0.0', '0.0'), None),           # GCN's "no position"
    (('148.9', '69.1', '0.0'), (148.9, 69.1, 0.0)),  # a point
    (('0.0', '4.35', '0.0'), (0.0, 4.35, 0.0)),
    (('10.0', '20.0', '180.0'), None),       # the whole sky
    (('10.0', '20.0', '-1.0'), None),
    (('10.0', '20.0', '12.5'), (10.0, 20.0, 12.5)),
])
def test_position_rules(position, expected):
    notice = notices.parse(with_position(
        read('built/agile_mcal_gcn.xml'), *position))
    if expected is None:
        assert not notice.has_position
    else:
        assert notice.has_position
        assert (notice.ra, notice.dec, notice.error_radius) == expected
