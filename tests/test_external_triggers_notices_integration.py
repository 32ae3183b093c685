"""Every notice type with no real sample, through the real path: pygcn's
VOEvent server -> gcn.listen in a worker -> external_triggers.handle on the
serial exttrig worker -> the local GraceDB server.

The samples sent here are the BUILT ones of ``tests/data/gcn/built/`` (see
test_external_triggers_parse for how each was made); the real samples of
``tests/data/gcn/`` go the same way in test_external_triggers_integration.
"""

import os

import pytest

from gwcelery.external import notices
from gwcelery.tasks import gcn, gracedb

from .conftest import DATA_DIR
from .listener_support import free_port, wait_for
from .test_external_triggers_integration import PygcnServer, log_files

pytestmark = pytest.mark.integration

BUILT = os.path.join(DATA_DIR, 'gcn', 'built')

# sample: (pipeline, search, trigger id, sky map file or None); None for a
# notice that must not be recorded.
EXPECTED = {
    'agile_mcal_gcn.xml': ('AGILE', 'GRB', '705604946',
                           'agile_skymap.fits.gz'),
    'fermi_gnd_pos_gcn.xml': ('Fermi', 'GRB', '705569475',
                              'fermi_skymap.fits.gz'),
    'fermi_subthresh_low_reliability_gcn.xml': None,
    'integral_spiacs_gcn.xml': ('INTEGRAL', 'GRB', '9120', None),
    'integral_wakeup_gcn.xml': ('INTEGRAL', 'GRB', '9121',
                                'integral_skymap.fits.gz'),
    'integral_refined_gcn.xml': ('INTEGRAL', 'GRB', '9122',
                                 'integral_skymap.fits.gz'),
    'integral_offline_gcn.xml': ('INTEGRAL', 'GRB', '9123',
                                 'integral_skymap.fits.gz'),
    'swift_ql_pos_gcn.xml': ('Swift', 'GRB', '1167705',
                             'swift_skymap.fits.gz'),
}


def read(name):
    with open(os.path.join(BUILT, name), 'rb') as f:
        return f.read()


def events_by_trigger():
    return {event['extra_attributes']['GRB']['trigger_id']: event
            for event in gracedb.get_events('group: External')}


def all_recorded():
    events = events_by_trigger()
    return all(
        expected[2] in events and (
            expected[3] is None
            or expected[3] in log_files(events[expected[2]]['graceid']))
        for expected in EXPECTED.values() if expected is not None)


def test_every_built_sample_is_covered():
    assert sorted(EXPECTED) == sorted(os.listdir(BUILT))


@pytest.mark.usefixtures('gracedb')
def test_built_notices_through_the_listener(start_worker, worker_settings):
    port = free_port()
    worker_settings.update(gcn_remote_port=port, external_skymap_nside=64,
                           listener_reconnect_delay_max=1.0)
    server = PygcnServer(port, [os.path.join(BUILT, name)
                                for name in sorted(EXPECTED)])
    try:
        # One worker for both queues saves a start-up: the listener holds
        # one of its two processes, so the notices are still handled one
        # at a time, as on the serial exttrig worker.
        exttrig = start_worker('exttrig', 'celery,exttrig',
                               '--concurrency', '2')
        gcn.listen.delay()
        wait_for(all_recorded, 60, interval=0.5,
                 message='an event and sky map per recorded sample')
        # The low-reliability candidate arrived too, and was dropped.
        wait_for(lambda: 'low reliability' in exttrig.log(), 30,
                 message='the low-reliability notice')
    finally:
        server.stop()

    events = events_by_trigger()
    assert len(events) == len(EXPECTED) - 1
    for name, expected in EXPECTED.items():
        if expected is None:
            continue
        pipeline, search, trigger_id, skymap = expected
        event = events[trigger_id]
        assert (event['group'], event['pipeline'], event['search']) == (
            'External', pipeline, search), name
        assert event['labels'] == [], name
        payload = read(name)
        assert gracedb.download('initial.data', event['graceid']) == \
            notices.recorded_payload(payload, notices.parse(payload)), name
        files = log_files(event['graceid'])
        assert files.count('initial.data') == 1, name
        if skymap is None:
            assert not any(f.endswith('.fits.gz') for f in files), name
        else:
            assert files.count(skymap) == 1, name
    log = exttrig.log()
    assert ('Fermi SubGRB trigger 705579758: notice ivo://nasa.gsfc.gcn/'
            'Fermi#GBM_SubThresh_2023-05-11T10:02:33.41_705579758_0-210 '
            'dropped, not recorded in GraceDB: low reliability: '
            'Reliability 2 <= 4') in log
    assert not gracedb.get_events('pipeline: Fermi search: SubGRB')
