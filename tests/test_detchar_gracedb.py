"""The data-quality check end to end in the eager mode: new-superevent and
new-External-event handlers, labels and log on the real local GraceDB
server (real HTTP), frames read with gwpy; the mock frame writer and the
bad-data mock events against the test Redis."""

import json
import os
import shutil

import pytest

from gwcelery import app
from gwcelery.detchar import mockframes
from gwcelery.tasks import detchar, first2years, gracedb

DETCHAR_DATA = os.path.join(os.path.dirname(__file__), 'data', 'detchar')

#: GPS start of the frames the tests write.
T0 = 1300000000


@pytest.fixture
def eager(monkeypatch, broker_app, gracedb):
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    return gracedb


def new_alert(obj):
    uid = obj.get('superevent_id') or obj['graceid']
    return {'uid': uid, 'alert_type': 'new', 'object': obj, 'data': obj}


def create_superevent(gpstime, instruments, pipeline='oLIB', group='Burst'):
    document = {'gpstime': gpstime, 'instruments': instruments,
                'far': 1e-10}
    event = gracedb.create_event(json.dumps(document).encode(), 'AllSky',
                                 pipeline, group, filename='event.json')
    return gracedb.create_superevent(event['graceid'], gpstime,
                                     gpstime - 0.05, gpstime + 0.05)


def dq_log(graceid):
    entries = [entry for entry in gracedb.get_log(graceid)
               if 'data_quality' in entry['tag_names']]
    assert len(entries) == 1
    return entries[0]['comment']


def test_real_h1_frame_gives_dqok_and_removes_a_stale_dqv(eager,
                                                          monkeypatch):
    monkeypatch.setitem(app.conf, 'llhoft_glob',
                        os.path.join(DETCHAR_DATA, '?-{detector}_*.gwf'))
    monkeypatch.setitem(app.conf, 'idq_channels',
                        ['H1:IDQ-PGLITCH_OVL_32_2048'])
    superevent = create_superevent(1216577978.05, 'H1')
    sid = superevent['superevent_id']
    gracedb.create_label('DQV', sid)
    detchar.handle_superevent(new_alert(superevent))
    assert gracedb.get_labels(sid) == ['DQOK']
    comment = dq_log(sid)
    assert 'Detector state for active instruments (H1) is good.' in comment
    assert 'No HW injections found.' in comment
    assert '<caption>Data quality bits</caption>' in comment


@pytest.fixture
def written(eager, monkeypatch, tmp_path):
    monkeypatch.setitem(app.conf, 'llhoft_glob',
                        str(tmp_path / '{detector}' / '*.gwf'))
    return app.conf


def write(conf, segments=()):
    for detector in ('H1', 'L1', 'V1'):
        for n in range(3):
            mockframes.write_frame(conf, detector, T0 + 4 * n, 4, segments)


def test_cleared_observation_intent_gives_dqv(written):
    write(written, [{'kind': 'dqv', 'start': T0 + 6, 'end': T0 + 6.1}])
    superevent = create_superevent(T0 + 6, 'H1,L1,V1', 'gstlal', 'CBC')
    sid = superevent['superevent_id']
    gracedb.create_label('DQOK', sid)
    detchar.handle_superevent(new_alert(superevent))
    assert gracedb.get_labels(sid) == ['DQV']
    comment = dq_log(sid)
    assert 'is bad.' in comment
    assert 'uses gated h(t)' in comment


def test_injection_gives_inj_on_an_external_event(written):
    write(written, [{'kind': 'inj', 'start': T0, 'end': T0 + 12}])
    document = {'gpstime': T0 + 5, 'trigger_duration': 1.0}
    event = gracedb.create_event(json.dumps(document).encode(), 'GRB',
                                 'Fermi', 'External', filename='grb.json')
    detchar.handle_external(new_alert(event))
    assert gracedb.get_labels(event['graceid']) == ['DQOK', 'INJ']
    assert 'Injection found.' in dq_log(event['graceid'])


def test_missing_frames_leave_no_label(written):
    superevent = create_superevent(T0 + 6, 'H1,L1')
    sid = superevent['superevent_id']
    detchar.handle_superevent(new_alert(superevent))
    assert gracedb.get_labels(sid) == []
    assert 'No readable frames for H1, L1.' in dq_log(sid)


def test_superevent_in_the_future_is_skipped(written):
    future = detchar.now_gps() + 3600
    superevent = create_superevent(future, 'H1')
    sid = superevent['superevent_id']
    detchar.check_vectors(superevent['preferred_event_data'], sid,
                          future - 1, future + 1)
    assert gracedb.get_labels(sid) == []
    assert 'is in the future' in dq_log(sid)


def test_mock_events_get_bad_data_in_turn(written, monkeypatch):
    monkeypatch.setitem(app.conf, 'mock_frames_interval', 2)
    monkeypatch.setitem(app.conf, 'mock_events_bad_data_fraction', 0.5)
    kinds = [detchar.mock_event_bad_data() for _ in range(4)]
    assert kinds == [None, 'dqv', None, 'inj']
    # The writer puts a requested segment in the frames it writes next.
    monkeypatch.setattr(detchar, 'now_gps', lambda: T0 + 13)
    detchar.request_bad_segment('dqv', T0 + 9, T0 + 9.5)
    detchar.request_bad_segment('inj', T0 - 900, T0 - 800)
    detchar.write_mock_frames()
    assert len(os.listdir(os.path.dirname(
        written['llhoft_glob'].format(detector='V1')))) == 300 // 4
    result = detchar.assess(written, {'pipeline': 'oLIB',
                                      'instruments': 'V1'}, T0 + 8, T0 + 9)
    assert result['dq'] == 'bad'
    assert result['injection'] == 'none'
    # The long-past segment is forgotten.
    assert detchar._bad_segments(T0 + 13) == [
        {'kind': 'dqv', 'start': T0 + 9, 'end': T0 + 9.5}]


def test_mock_event_requests_its_bad_segment(written, monkeypatch):
    monkeypatch.setitem(app.conf, 'mock_frames_interval', 2)
    monkeypatch.setitem(app.conf, 'mock_events_bad_data_fraction', 1.0)
    monkeypatch.setitem(app.conf, 'mock_grb_coincidence_probability', 0.0)
    first2years.upload_event(number=0, gpstime=T0 + 6)
    segment, = detchar._bad_segments(T0)
    assert segment['start'] == T0 + 6
    assert segment['kind'] == 'dqv'


def png_size(data):
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return (int.from_bytes(data[16:20], 'big'),
            int.from_bytes(data[20:24], 'big'))


def test_omegascans_after_the_preliminary(eager, monkeypatch, tmp_path):
    # The GW150914 strain frame, under a conventional frame name.
    (tmp_path / 'H1').mkdir()
    shutil.copy(os.path.join(DETCHAR_DATA, 'scanme.gwf'),
                tmp_path / 'H1' / 'H-H1_GWOSC-1126259447-32.gwf')
    monkeypatch.setitem(app.conf, 'llhoft_glob',
                        str(tmp_path / '{detector}' / '*.gwf'))
    monkeypatch.setitem(app.conf, 'strain_channel_names',
                        {'H1': 'H1:GWOSC-16KHZ_R1_STRAIN',
                         'V1': 'V1:Hrec_hoft_16384Hz'})
    monkeypatch.setitem(app.conf, 'omegascan_dpi', 20)
    superevent = create_superevent(1126259462.4, 'H1')
    sid = superevent['superevent_id']
    label_alert = {'uid': sid, 'alert_type': 'label_added',
                   'object': superevent, 'data': {'name': 'EM_READY'}}

    def scan_logs():
        return sorted(entry['comment'] for entry in gracedb.get_log(sid)
                      if 'data_quality' in entry['tag_names'])

    detchar.handle_preliminary(label_alert)
    assert scan_logs() == []
    detchar.handle_preliminary(
        dict(label_alert, data={'name': 'GCN_PRELIM_SENT'}))
    assert scan_logs() == ['H1 omegascan', 'V1 omegascan']
    # Three 10 x 5 inch panels for H1; V1 has no frames: a small figure.
    assert png_size(gracedb.download('H1_omegascan.png', sid)) == (600, 100)
    assert png_size(gracedb.download('V1_omegascan.png', sid)) == (200, 40)
