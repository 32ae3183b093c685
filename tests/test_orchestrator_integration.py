"""The whole pipeline, from a CBC upload to a VOEvent at a GCN client.

Real parts only: the local GraceDB server (alerts over Redis pub/sub),
workers on all four queues, Celery Beat starting the LVAlert listener and
the VOEvent broker, the real BAYESTAR, and pygcn's own client connected to
the broker as GCN's receiver would be.
"""

import time

import lxml.etree
import pytest
import redis

from gwcelery import app, voevent
from gwcelery.tasks import gracedb

from .listener_support import (
    listener_settings,
    pygcn_received,
    running,
    start_pygcn_client,
    wait_for,
)

pytestmark = pytest.mark.integration

#: Bound on the time from upload to VOEvent at the client: BAYESTAR takes
#: 20-30 s on two idle cores; the rest of the pipeline about a second.
ALERT_TIMEOUT = 240

#: The workers' superevent_clean_up_timeout (s).
CLEAN_UP_TIMEOUT = 5.0


def subscribed(redis_url, node):
    client = redis.Redis.from_url(redis_url)
    try:
        channel = app.conf['lvalert_redis_channel_prefix'] + node
        return client.pubsub_numsub(channel)[0][1]
    finally:
        client.close()


@pytest.fixture
def gracedb_settings(gracedb):
    """The ``gracedb`` fixture (server publishing alerts to the test Redis,
    set as the pipeline's GraceDB) under a name that leaves
    :mod:`gwcelery.tasks.gracedb` visible."""
    return gracedb


def test_cbc_upload_to_gcn_client(gracedb_server, gracedb_settings,
                                  worker_settings, start_worker, start_beat,
                                  redis_url, coinc_bytes, psd_bytes):
    settings = listener_settings(worker_settings,
                                 gracedb_url=gracedb_server.url)
    # Only for the workers: quick plots, a clean-up check within the test,
    # no fallback alert.
    worker_settings.update(
        superevent_clean_up_timeout=CLEAN_UP_TIMEOUT,
        preliminary_alert_timeout=600.0, volume_plot_resolution=16,
        volume_plot_dpi=30, skymap_plot_dpi=50)
    start_worker('celery', 'celery', '--concurrency', '6')
    start_worker('openmp', 'openmp', '--concurrency', '1')
    start_worker('superevent', 'superevent', '--concurrency', '1')
    start_worker('exttrig', 'exttrig', '--concurrency', '1')
    start_beat()
    running('gwcelery.tasks.lvalert.listen', timeout=60)
    running('gwcelery.tasks.gcn.broker', timeout=60)
    wait_for(lambda: subscribed(redis_url, 'cbc_gstlal')
             and subscribed(redis_url, 'superevent'), 30,
             message='the LVAlert listener to subscribe')

    client = start_pygcn_client(settings['gcn_bind_port'], redis_url)
    try:
        start = time.monotonic()
        event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                     filename='coinc.xml')
        gracedb.upload(psd_bytes, 'psd.xml.gz', event['graceid'], 'PSD',
                       ['psd'])
        payload, = wait_for(lambda: pygcn_received(redis_url), ALERT_TIMEOUT,
                            interval=0.2, message='the VOEvent at the client')
        print(f'upload to VOEvent at the client: '
              f'{time.monotonic() - start:.1f} s')

        voevent.validate(payload)
        params = {p.get('name'): p.get('value')
                  for p in lxml.etree.fromstring(payload).iter('Param')}
        superevent_id = params['GraceID']
        superevent = gracedb.get_superevent(superevent_id)
        assert superevent['preferred_event'] == event['graceid']
        assert params['AlertType'] == 'Preliminary'
        assert 'skymap_fits' in params and 'HasNS' in params

        # The uploads after the alert (circular) and the plots finish soon.
        expected_files = {
            'bayestar.multiorder.fits', 'bayestar.png', 'bayestar.volume.png',
            'bayestar.fits.html', 'em_bright.json', 'gstlal.p_astro.json',
            f'{superevent_id}-1-Preliminary.xml', 'circular.txt'}

        def files():
            return {entry['filename']
                    for entry in gracedb.get_log(superevent_id)}
        wait_for(lambda: expected_files <= files(), 120, interval=0.5,
                 message=f'the products on {superevent_id}: '
                 f'{expected_files - files()} missing')
        labels = gracedb.get_labels(superevent_id)
        assert {'EM_READY', 'GCN_PRELIM_SENT'} <= set(labels)
        record, = gracedb.get_voevents(superevent_id)
        assert record['skymap_filename'] == 'bayestar.multiorder.fits,0'
        assert gracedb.download(record['filename'], superevent_id) == payload

        # After the clean-up timeout, with the same preferred event, no
        # second notice.
        time.sleep(CLEAN_UP_TIMEOUT + 3)
        assert pygcn_received(redis_url) == [payload]
        assert len(gracedb.get_voevents(superevent_id)) == 1
    finally:
        client.terminate()
        client.wait()
