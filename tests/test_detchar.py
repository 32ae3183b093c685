"""The data-quality decisions (pure) and the check of real GWF frames: the
shared H1 low-latency frame and frames written here with gwpy by the mock
frame writer."""

import os
import threading
import time

import pytest

from gwcelery import app
from gwcelery.detchar import frames, mockframes, vectors
from gwcelery.tasks import detchar

DETCHAR_DATA = os.path.join(os.path.dirname(__file__), 'data', 'detchar')

#: The real 4-s H1 frame: every bit good, iDQ 0 in H1:IDQ-PGLITCH_OVL_32_2048.
H1_START = 1216577976
H1_EVENT = {'graceid': 'G1', 'pipeline': 'oLIB', 'instruments': 'H1',
            'gpstime': 1216577978.05}

#: GPS start of the frames the tests write.
T0 = 1300000000


@pytest.fixture
def real_frames(monkeypatch):
    """Settings reading the shared real H1 frame."""
    monkeypatch.setitem(app.conf, 'llhoft_glob',
                        os.path.join(DETCHAR_DATA, '?-{detector}_*.gwf'))
    monkeypatch.setitem(app.conf, 'idq_channels',
                        ['H1:IDQ-PGLITCH_OVL_32_2048'])
    return app.conf


@pytest.fixture
def written_frames(tmp_path, monkeypatch):
    """Settings reading frames under `tmp_path`; the tests write them."""
    monkeypatch.setitem(app.conf, 'llhoft_glob',
                        str(tmp_path / '{detector}' / '*.gwf'))
    return app.conf


def write(conf, segments=(), detectors=('H1', 'L1', 'V1'), count=3):
    """Write `count` 4-s frames from :data:`T0` for `detectors`."""
    for detector in detectors:
        for n in range(count):
            mockframes.write_frame(conf, detector, T0 + 4 * n, 4, segments)


def event(instruments='H1,L1,V1', pipeline='oLIB'):
    return {'graceid': 'G2', 'pipeline': pipeline,
            'instruments': instruments, 'gpstime': T0 + 6}


# --- pure decisions --------------------------------------------------------

def test_a_bit_is_good_only_if_set_in_every_sample(real_frames):
    bits = vectors.bits_of(real_frames, 'L1:DMT-DQ_VECTOR',
                           'dmt_dq_vector_bits', [6, 6, 4])
    assert bits == {'L1:NO_OMC_DCPD_ADC_OVERFLOW': False,
                    'L1:NO_DMT-ETMY_ESD_DAC_OVERFLOW': True}
    assert set(vectors.bits_of(real_frames, 'L1:DMT-DQ_VECTOR',
                               'dmt_dq_vector_bits', []).values()) == {None}


@pytest.mark.parametrize('bits,state', [
    ({'H1:HOFT_OK': True, 'L1:HOFT_OK': True}, 'good'),
    ({'H1:HOFT_OK': True, 'L1:HOFT_OK': None}, 'unknown'),
    ({'H1:HOFT_OK': False, 'L1:HOFT_OK': None}, 'bad'),
    ({'H1:HOFT_OK': True, 'H1:NO_CBC_HW_INJ': False}, 'good'),
    ({'V1:HOFT_OK': False}, 'unknown'),
])
def test_dq_state_of_the_active_detectors(bits, state):
    assert vectors.dq_state(bits, ['H1', 'L1']) == state


def test_labels_follow_the_states(real_frames):
    decide = vectors.decide_labels
    assert decide(real_frames, 'good', 'none', 'low', False) == (
        ['DQOK'], ['DQV', 'INJ'])
    assert decide(real_frames, 'bad', 'found', 'low', False) == (
        ['DQV', 'INJ'], ['DQOK'])
    assert decide(real_frames, 'unknown', 'unknown', 'unknown', False) == (
        [], [])
    assert decide(real_frames, 'good', 'none', 'high', True) == (
        ['DQV'], ['DQOK', 'INJ'])


def test_window_pads_by_pipeline_and_external_spans(real_frames):
    assert vectors.window(real_frames, 'gstlal', 10, 12) == (8, 14)
    assert vectors.window(real_frames, 'oLIB', 10, 12) == (8.5, 13.5)
    grb = {'gpstime': 100, 'pipeline': 'Fermi', 'search': 'GRB',
           'extra_attributes': {'GRB': {'trigger_duration': 1.5}}}
    assert vectors.event_span(grb) == (100, 101.5)
    assert vectors.event_span({'gpstime': 100, 'pipeline': 'SNEWS',
                               'search': 'Supernova'}) == (100, 100)


def test_frames_must_cover_the_window_without_gap(written_frames, tmp_path):
    write(written_frames, detectors=['H1'])
    pattern = written_frames['llhoft_glob']
    assert len(frames.covering_files(pattern, 'H1', T0 + 3, T0 + 9)) == 3
    assert frames.covering_files(pattern, 'H1', T0 + 3, T0 + 13) is None
    os.remove(tmp_path / 'H1' / mockframes.frame_name('H1', T0 + 4, 4))
    assert frames.covering_files(pattern, 'H1', T0 + 3, T0 + 9) is None


# --- the real H1 frame -----------------------------------------------------

def test_real_h1_frame_is_good(real_frames):
    result = detchar.assess(real_frames, H1_EVENT, 1216577978,
                            1216577978.1)
    assert result['dq'] == 'good'
    assert result['injection'] == 'none'
    assert result['add'] == ['DQOK']
    assert result['remove'] == ['DQV', 'INJ']
    for name in ('NO_OMC_DCPD_ADC_OVERFLOW', 'NO_DMT-ETMY_ESD_DAC_OVERFLOW',
                 'HOFT_OK', 'OBSERVATION_INTENT', 'NO_CBC_HW_INJ'):
        assert result['bits'][f'H1:{name}'] is True
    assert result['idq'] == {'H1:IDQ-PGLITCH_OVL_32_2048': 0.0}
    message = vectors.summary(real_frames, result)
    assert 'No HW injections found.' in message
    assert 'within -1.5/+1.5 seconds' in message
    assert '<td>H1:OBSERVATION_INTENT</td><td style="background:#0f0">1' \
        in message


def test_gated_pipeline_skips_the_dmt_vector(real_frames):
    # +-2 s: the whole 4-s frame.
    result = detchar.assess(real_frames, dict(H1_EVENT, pipeline='gstlal'),
                            1216577978, 1216577978)
    assert 'H1:NO_OMC_DCPD_ADC_OVERFLOW' not in result['bits']
    assert result['dq'] == 'good'
    assert result['prepost'] == (2.0, 2.0)
    assert 'uses gated h(t), LIGO DMT-DQ_VECTOR not checked' in \
        vectors.summary(real_frames, result)


def test_window_beyond_the_real_frame_is_unknown(real_frames):
    result = detchar.assess(real_frames, H1_EVENT, 1216577979, 1216577980)
    assert result['dq'] == 'unknown'
    assert result['missing'] == ['H1']
    assert result['add'] == result['remove'] == []
    assert 'No readable frames for H1.' in vectors.summary(real_frames,
                                                          result)


# --- frames written with gwpy ----------------------------------------------

def test_written_good_frames_of_three_detectors(written_frames):
    write(written_frames)
    result = detchar.assess(written_frames, event(), T0 + 5, T0 + 7)
    assert result['dq'] == 'good'
    assert result['injection'] == 'none'
    assert result['bits']['V1:GOOD_DATA_QUALITY_CAT1'] is True
    assert result['idq_state'] == 'low'


def test_cleared_observation_intent_is_a_veto(written_frames):
    write(written_frames, [{'kind': 'dqv', 'start': T0 + 7.5,
                            'end': T0 + 7.6}])
    result = detchar.assess(written_frames, event('L1'), T0 + 5, T0 + 7)
    assert result['dq'] == 'bad'
    assert result['bits']['L1:OBSERVATION_INTENT'] is False
    assert result['bits']['L1:HOFT_OK'] is True
    assert result['add'] == ['DQV']
    # The bad sample is after the window of a window that ends earlier.
    early = detchar.assess(written_frames, event('L1'), T0 + 3, T0 + 4)
    assert early['dq'] == 'good'


def test_injection_bit_gives_inj(written_frames):
    write(written_frames, [{'kind': 'inj', 'start': T0, 'end': T0 + 12}])
    result = detchar.assess(written_frames, event(), T0 + 5, T0 + 7)
    assert result['injection'] == 'found'
    assert result['dq'] == 'good'
    assert result['add'] == ['DQOK', 'INJ']
    assert 'Injection found.' in vectors.summary(written_frames, result)


def test_missing_detector_is_unknown(written_frames):
    write(written_frames, detectors=['H1', 'L1'])
    result = detchar.assess(written_frames, event(), T0 + 5, T0 + 7)
    assert result['missing'] == ['V1']
    assert result['dq'] == 'unknown'
    assert result['bits']['V1:HOFT_OK'] is None
    assert result['add'] == []
    # A detector the event did not use does not matter.
    assert detchar.assess(written_frames, event('H1,L1'), T0 + 5,
                          T0 + 7)['dq'] == 'good'


def test_unreadable_frame_is_unknown(written_frames, tmp_path):
    write(written_frames, detectors=['H1'])
    path = tmp_path / 'H1' / mockframes.frame_name('H1', T0 + 4, 4)
    path.write_bytes(b'not a frame')
    result = detchar.assess(written_frames, event('H1'), T0 + 5, T0 + 7)
    assert result['dq'] == 'unknown'
    assert result['bits']['H1:HOFT_OK'] is None


def test_external_event_checks_every_detector(written_frames):
    write(written_frames, [{'kind': 'dqv', 'start': T0, 'end': T0 + 12}],
          detectors=['V1'])
    write(written_frames, detectors=['H1', 'L1'])
    grb = {'graceid': 'E1', 'pipeline': 'Fermi', 'search': 'GRB',
           'instruments': '', 'gpstime': T0 + 5,
           'extra_attributes': {'GRB': {'trigger_duration': 2}}}
    result = detchar.assess(written_frames, grb, *vectors.event_span(grb))
    assert result['active'] == ['H1', 'L1', 'V1']
    assert result['dq'] == 'bad'


def test_old_mock_frames_are_pruned(written_frames, tmp_path):
    written = mockframes.write_frames(written_frames, T0 + 21, 4, 20)
    assert len(written) == 15
    assert mockframes.write_frames(written_frames, T0 + 21, 4, 20) == []
    assert mockframes.prune_frames(written_frames, T0 + 21, 10) == 2 * 3
    assert sorted(os.listdir(tmp_path / 'H1')) == [
        mockframes.frame_name('H1', T0 + 8, 4),
        mockframes.frame_name('H1', T0 + 12, 4),
        mockframes.frame_name('H1', T0 + 16, 4)]


def test_late_frames_are_waited_for(written_frames):
    now = int(detchar.now_gps())
    mockframes.write_frame(written_frames, 'H1', now - 8, 4, ())
    late = threading.Timer(1.0, mockframes.write_frame,
                           (written_frames, 'H1', now - 4, 4, ()))
    late.start()
    try:
        began = time.monotonic()
        result = detchar.assess(written_frames, event('H1'), now - 6,
                                now - 5)
    finally:
        late.join()
    assert result['dq'] == 'good'
    assert time.monotonic() - began >= 0.9


def test_a_frame_pruned_meanwhile_by_another_run_is_skipped(
        written_frames, tmp_path, monkeypatch):
    mockframes.write_frames(written_frames, T0 + 21, 4, 20)
    remove = os.remove

    def pruned_by_another_run_first(path):
        remove(path)
        remove(path)  # raises FileNotFoundError, as the slower run did

    monkeypatch.setattr(mockframes.os, 'remove', pruned_by_another_run_first)
    assert mockframes.prune_frames(written_frames, T0 + 21, 10) == 0
    assert len(os.listdir(tmp_path / 'H1')) == 3
