"""Mock events: simulated candidates moved to a new time and uploaded."""

import gzip
import io
import json
import os
import queue
import random
import subprocess
import sys
import threading

import gcn
import lxml.etree
import pytest
from igwn_ligolw import lsctables, utils
from igwn_ligolw.ligolw import LIGOLWContentHandler

from gwcelery import app
from gwcelery.external import notices
from gwcelery.tasks import bayestar, first2years, gracedb, p_astro
from gwcelery.util import voevent_transport
from gwcelery.util.redis_server import free_port


def singles(coinc):
    doc = utils.load_fileobj(io.BytesIO(coinc),
                             contenthandler=LIGOLWContentHandler)
    return [(row.ifo, float(row.end), row.snr)
            for row in lsctables.SnglInspiralTable.get_table(doc)]


@pytest.mark.parametrize('number', range(first2years.NUM_SIGNALS))
def test_every_shipped_signal_loads_for_every_pipeline(number):
    for pipeline in first2years.PIPELINES:
        coinc = first2years.load_candidate(number, pipeline)
        assert len(singles(coinc)) >= 2
        assert first2years.coinc_time(coinc) > 0
    assert gzip.decompress(first2years.load_psd()).startswith(b'<?xml')


def test_shift_moves_every_time_by_the_offset():
    coinc = first2years.load_candidate(2, 'gstlal')
    shifted = first2years.shift_coinc(coinc, 1e8 + 0.25)
    before, after = singles(coinc), singles(shifted)
    for (ifo, t0, snr), (ifo2, t1, snr2) in zip(before, after, strict=True):
        assert (ifo, snr) == (ifo2, snr2)
        assert t1 - t0 == pytest.approx(1e8 + 0.25, abs=1e-6)
    assert first2years.coinc_time(shifted) == pytest.approx(
        first2years.coinc_time(coinc) + 1e8 + 0.25, abs=1e-6)


def test_plan_keeps_the_pipelines_time_differences():
    gpstime = 1400000000.0
    plan = first2years.plan_uploads(4, gpstime, random.Random(3))
    assert 2 <= len(plan) <= 3
    assert len({pipeline for pipeline, _, _ in plan}) == len(plan)
    times = [first2years.coinc_time(coinc) for _, coinc, _ in plan]
    assert times[0] == pytest.approx(gpstime, abs=1e-6)
    assert all(abs(t - gpstime) < 0.05 for t in times)
    assert all(0.1 <= delay <= 2.0 for _, _, delay in plan)


@pytest.mark.integration
@pytest.mark.usefixtures('gracedb')
def test_upload_event_eagerly_to_local_gracedb(monkeypatch):
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    # A coincident MDC GRB is tested below; here only the CBC uploads.
    monkeypatch.setitem(app.conf, 'mock_grb_coincidence_probability', 0.0)
    gpstime = 1400000000.0
    first2years.upload_event(number=0, gpstime=gpstime)
    events = gracedb.get_events('MDC 1399999999 .. 1400000001')
    assert 1 <= len(events) <= 3
    for event in events:
        assert event['graceid'].startswith('M')
        assert event['group'] == 'CBC'
        assert event['search'] == 'MDC'
        assert event['gpstime'] == pytest.approx(gpstime, abs=0.05)
        assert event['far'] < 1e-6
        graceid = event['graceid']
        style = first2years.UPLOAD_STYLES[event['pipeline']]
        files = {entry['filename'] for entry in gracedb.get_log(graceid)}
        # O4 style: the PSDs inside coinc.xml, no psd.xml.gz; O3 style: a
        # coinc.xml without PSDs and the same PSDs beside it.
        coinc = gracedb.download('coinc.xml', graceid)
        assert (bayestar.has_psds(bayestar.read_ligolw(coinc))
                == style['psds_in_coinc'])
        assert ('psd.xml.gz' in files) != style['psds_in_coinc']
        if not style['psds_in_coinc']:
            assert gracedb.download('psd.xml.gz', graceid) == \
                first2years.load_psd()
        own = p_astro.filename(event['pipeline'])
        assert (own in files) == style['own_p_astro']
        if style['own_p_astro']:
            assert set(json.loads(gracedb.download(own, graceid))) == {
                'BNS', 'NSBH', 'BBH', 'Terrestrial'}


def test_upload_styles_mix_both_kinds():
    """gwcelery local sees O4-style and O3-style uploads, with and
    without the search's own p_astro, as a real run does."""
    styles = first2years.UPLOAD_STYLES
    assert set(styles) == set(first2years.PIPELINES)
    for key in ('psds_in_coinc', 'own_p_astro'):
        assert {style[key] for style in styles.values()} == {True, False}


def test_embedded_psds_are_the_shipped_ones():
    import numpy as np

    coinc = first2years.load_candidate(0, 'MBTA')
    o4 = first2years.embed_psds(coinc, first2years.load_psd())
    event = bayestar.read_event(o4)
    reference = bayestar.read_event(coinc, first2years.load_psd())
    for a, b in zip(event.singles, reference.singles, strict=True):
        assert a.detector == b.detector
        # Written as text, as the searches do: to the last bit or so.
        np.testing.assert_allclose(a.psd.data.data, b.psd.data.data,
                                   rtol=1e-14)


def test_mock_grb_notice_parses_as_a_new_fermi_grb():
    gpstime = 1400000123.25
    notice = first2years.mock_grb_notice(gpstime, ra=12.5, dec=-45.25,
                                         error_radius=4.0)
    parsed = notices.parse(notice)
    assert parsed.pipeline == 'Fermi'
    assert parsed.search == 'GRB'
    assert parsed.gpstime == pytest.approx(gpstime, abs=0.01)
    assert parsed.trigger_id == str(int(gpstime) - 662342413)
    assert parsed.trigger_id in parsed.ivorn
    assert (parsed.ra, parsed.dec, parsed.error_radius) == (12.5, -45.25,
                                                            4.0)
    assert parsed.role == 'observation'
    assert voevent_transport.kind(lxml.etree.fromstring(notice)) == 'voevent'


@pytest.mark.integration
def test_injected_grb_reaches_a_gcn_client_through_the_mock_server(
        broker_app, monkeypatch):
    """inject_grb -> Redis -> ``gwcelery mock-gcn-server`` -> pygcn."""
    port = free_port()
    env = {**os.environ, 'CELERY_BROKER_URL': broker_app.conf.broker_url}
    server = subprocess.Popen(
        [sys.executable, '-m', 'gwcelery', 'mock-gcn-server',
         '--port', str(port)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    received = queue.Queue()
    try:
        monkeypatch.setitem(app.conf, 'task_always_eager', True)
        first2years.inject_grb(gpstime=1400000000.0)
        threading.Thread(target=gcn.listen, daemon=True, kwargs=dict(
            host='127.0.0.1', port=port,
            handler=lambda payload, root: received.put(payload))).start()
        payload = received.get(timeout=30)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    parsed = notices.parse(payload)
    assert parsed.gpstime == pytest.approx(1400000000.0, abs=0.01)


@pytest.mark.integration
@pytest.mark.usefixtures('gracedb')
def test_coincident_mdc_grb_is_linked_by_raven(monkeypatch):
    """A mock event with its GRB: RAVEN links them (both MDC)."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'mock_grb_coincidence_probability', 1.0)
    gpstime = 1400000000.0
    first2years.upload_event(number=1, gpstime=gpstime)
    grb, = gracedb.get_events('group: External search: MDC')
    assert grb['pipeline'] == 'Fermi'
    assert 0.5 <= grb['gpstime'] - gpstime <= 2.0
    # Eager mode has no listener: run the superevent manager and RAVEN on
    # the first candidate as their alerts would.
    from gwcelery.tasks import raven, superevents
    event = gracedb.get_events('MDC pipeline: gstlal pycbc MBTA')[-1]
    superevents.handle({'uid': event['graceid'], 'alert_type': 'new',
                        'data': event, 'object': event})
    superevent, = gracedb.get_superevents('category: MDC')
    raven.handle_superevent({'uid': superevent['superevent_id'],
                             'alert_type': 'new', 'data': superevent,
                             'object': superevent})
    superevent = gracedb.get_superevent(superevent['superevent_id'])
    assert grb['graceid'] in superevent['em_events']
    assert 'EM_COINC' in superevent['labels']
