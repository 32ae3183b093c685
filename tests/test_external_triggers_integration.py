"""External triggers through the real path: pygcn's VOEvent server ->
gcn.listen in a worker -> external_triggers.handle on the serial exttrig
worker -> the local GraceDB server; and RAVEN driven by the server's
alerts: GW uploads -> superevent worker -> LVAlert listener ->
raven.handle_superevent."""

import os
import subprocess
import sys

import pytest
import redis
from astropy.time import Time

from gwcelery import app
from gwcelery.tasks import gcn, gracedb, lvalert

from .conftest import DATA_DIR
from .listener_support import free_port, wait_for
from .superevent_uploads import coinc_xml
from .test_external_triggers import GRB_RATE, modified, read

pytestmark = pytest.mark.integration

SAMPLES = sorted(os.path.join(DATA_DIR, 'gcn', name)
                 for name in os.listdir(os.path.join(DATA_DIR, 'gcn'))
                 if name.endswith('.xml'))

# (pipeline, search, trigger id): (labels, sky map file or None)
EXPECTED_EVENTS = {
    ('Fermi', 'GRB', '548848711'): ([], 'fermi_skymap.fits.gz'),
    ('Fermi', 'GRB', '548841234'): (['NOT_GRB'], None),
    ('Fermi', 'GRB', '598032876'): (['NOT_GRB'], 'fermi_skymap.fits.gz'),
    ('Fermi', 'SubGRB', '578679123'): ([], 'fermi_skymap.fits.gz'),
    ('Swift', 'GRB', '1123129'): ([], 'swift_skymap.fits.gz'),
    ('SNEWS', 'Supernova', '1000194'): ([], None),
}

SAMPLE_OF_TRIGGER = {
    '548848711': 'fermi_grb_gcn.xml',
    '548841234': 'fermi_initial_grb_gcn.xml',
    '598032876': 'fermi_noise_gcn.xml',
    '578679123': 'fermi_subthresh_grb_gcn.xml',
    '1123129': 'swift_grb_gcn.xml',
    '1000194': 'snews_gcn.xml',
}


class PygcnServer:
    """pygcn's VOEvent server sending files over and over."""

    def __init__(self, port, paths, interval=0.2):
        self.process = subprocess.Popen(
            [sys.executable, '-c',
             'import sys, gcn; gcn.serve(sys.argv[3:], port=int(sys.argv[1]),'
             ' retransmit_timeout=float(sys.argv[2]))',
             str(port), str(interval), *paths],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.process.terminate()
        self.process.wait()


def external_events():
    return {(event['pipeline'], event['search'],
             event['extra_attributes']['GRB']['trigger_id']): event
            for event in gracedb.get_events('group: External')}


def log_files(graceid):
    return [entry['filename'] for entry in gracedb.get_log(graceid)
            if entry['filename']]


def all_recorded():
    events = external_events()
    return set(events) == set(EXPECTED_EVENTS) and all(
        skymap is None or skymap in log_files(events[key]['graceid'])
        for key, (_, skymap) in EXPECTED_EVENTS.items())


def superevent_near(t, category='Production'):
    found = gracedb.get_superevents(
        f'category: {category} t_0: {t - 5!r} .. {t + 5!r}')
    return found[0] if found else None


def upload_cbc(gpstime, far):
    return gracedb.create_event(coinc_xml(gpstime, far, 12.0), 'AllSky',
                                'gstlal', 'CBC', filename='coinc.xml')


@pytest.mark.usefixtures('gracedb')
def test_notices_to_graceDB_and_coincidences_through_listeners(
        start_worker, worker_settings, redis_url, tmp_path):
    port = free_port()
    worker_settings.update(gcn_remote_port=port, external_skymap_nside=64,
                           listener_reconnect_delay_max=1.0)
    server = PygcnServer(port, SAMPLES)
    try:
        general = start_worker('general', 'celery', '--concurrency', '4')
        exttrig = start_worker('exttrig', 'exttrig', '--concurrency', '1')
        start_worker('superevent', 'superevent', '--concurrency', '1')
        # What Beat does every second: submit the (singleton) listeners.
        gcn.listen.delay()
        lvalert.listen.delay()
        client = redis.Redis.from_url(redis_url)
        channel = app.conf['lvalert_redis_channel_prefix'] + 'superevent'
        wait_for(lambda: client.pubsub_numsub(channel)[0][1], 30,
                 message='the LVAlert listener to subscribe')
        client.close()

        # Every sample becomes the right event, once, even though the
        # server sends each of them again and again.
        wait_for(all_recorded, 60, interval=0.5,
                 message='an event and sky map per sample')
        wait_for(lambda: exttrig.log().count('identical notice') >= 7, 30,
                 interval=0.5, message='a second round of notices')
    finally:
        server.stop()

    events = external_events()
    assert set(events) == set(EXPECTED_EVENTS)
    for key, (labels, skymap) in EXPECTED_EVENTS.items():
        event = events[key]
        graceid = event['graceid']
        assert event['group'] == 'External'
        assert event['labels'] == labels
        assert gracedb.download('initial.data', graceid) == read(
            SAMPLE_OF_TRIGGER[key[2]])
        files = log_files(graceid)
        assert files.count('initial.data') == 1  # never replaced
        if skymap is not None:
            assert files.count(skymap) == 1
    # The test packet of SNEWS is an event of the group Test.
    tests = gracedb.get_events('group: Test pipeline: SNEWS')
    assert [event['extra_attributes']['GRB']['trigger_id']
            for event in tests] == ['1000194']

    # A GW candidate 1 s before the Swift GRB: the superevent worker makes
    # a superevent, whose alert starts the search from the GW side.
    swift = events[('Swift', 'GRB', '1123129')]
    upload_cbc(swift['gpstime'] - 1.0, far=1e-9)
    superevent = wait_for(
        lambda: (s := superevent_near(swift['gpstime'])) and s['em_type']
        and s, 60, interval=0.5, message='the coincidence with Swift')
    assert superevent['em_type'] == swift['graceid']
    assert superevent['em_events'] == [swift['graceid']]
    assert superevent['time_coinc_far'] == pytest.approx(6 * GRB_RATE * 1e-9)
    wait_for(lambda: {'EM_COINC', 'RAVEN_ALERT'} <= set(
        gracedb.get_labels(superevent['superevent_id'])), 30,
        message='the RAVEN labels')

    # A GW candidate with no external trigger around it yet.
    t_gw = 1300000000.0
    upload_cbc(t_gw, far=1e-8)
    sid = wait_for(lambda: (s := superevent_near(t_gw)) and any(
        'RAVEN: no external triggers' in entry['comment']
        for entry in gracedb.get_log(s['superevent_id']))
        and s['superevent_id'], 60, interval=0.5,
        message='the search from the new superevent')

    # Then, on a new connection: a truncated notice (the listener skips
    # it), a notice without trigger number (the handler rejects it), a
    # refined position of the Fermi GRB, and a GRB 1 s after t_gw.
    fermi = read('fermi_grb_gcn.xml')
    payloads = {
        'truncated.xml': read('swift_grb_gcn.xml')[:3000],
        'no_trigger.xml': read('swift_grb_gcn.xml').replace(
            b'name="TrigID"', b'name="Trig"'),
        'refined.xml': modified(fermi, ra=150.0, dec=-30.0, radius=3.0,
                                date='2018-05-24T18:40:00'),
        'new_grb.xml': modified(
            fermi, params={'TrigID': 600000001},
            isotime=Time(t_gw + 1, format='gps').utc.isot + 'Z',
            ivorn='ivo://nasa.gsfc.gcn/Fermi#GBM_Fin_Pos_600000001'),
    }
    paths = []
    for name, payload in payloads.items():
        paths.append(str(tmp_path / name))
        with open(paths[-1], 'wb') as f:
            f.write(payload)
    server = PygcnServer(port, paths)
    try:
        new_grb = wait_for(
            lambda: external_events().get(('Fermi', 'GRB', '600000001')),
            60, interval=0.5, message='the new GRB')
        wait_for(lambda: gracedb.get_superevent(sid)['em_type'], 60,
                 interval=0.5, message='the coincidence with the new GRB')
        refined = external_events()[('Fermi', 'GRB', '548848711')]
        wait_for(lambda: exttrig.log().count('Rejected a GCN notice') >= 1,
                 30, message='the rejection of the notice without TrigID')
    finally:
        server.stop()

    superevent = gracedb.get_superevent(sid)
    assert superevent['em_type'] == new_grb['graceid']
    assert superevent['time_coinc_far'] == pytest.approx(6 * GRB_RATE * 1e-8)
    assert refined['extra_attributes']['GRB']['ra'] == 150.0
    assert gracedb.download('initial.data', refined['graceid']) == \
        payloads['refined.xml']
    assert len(external_events()) == len(EXPECTED_EVENTS) + 1
    assert 'no trigger number' in exttrig.log()
    assert 'skipping a packet that is not XML' in general.log()
