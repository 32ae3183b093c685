"""What a CBC search's uploads start
(:mod:`gwcelery.tasks.orchestrator_uploads`): the localisation trigger
of O4-style (PSDs inside ``coinc.xml``) and O3-style (separate
``psd.xml.gz``) uploads, and the search's own classification files.
Eager mode against the local GraceDB server over
real HTTP; BAYESTAR is the real one.

``tests/data/gracedb/coinc_psds.xml.gz`` is the shared real upload
(``coinc.xml`` + ``psd.xml.gz``) made O4-style with the LIGO-LW tools::

    python tools/make_mock_events.py --embed-psds \\
        tests/data/gracedb/coinc.xml tests/data/gracedb/psd.xml.gz \\
        -o tests/data/gracedb/coinc_psds.xml.gz
"""

import gzip
import json
import os
import subprocess

import pytest

from gwcelery import app
from gwcelery.tasks import (
    gracedb,
    localization,
    orchestrator,
    orchestrator_uploads,
    skymaps,
)

from .fixtures.orchestrator import GRACEDB_DATA, read_gracedb_data

#: A search's own classification, unlike what we would compute (BNS).
PIPELINE_P_ASTRO = {'BNS': 0.25, 'NSBH': 0.25, 'BBH': 0.25,
                    'Terrestrial': 0.25}


@pytest.fixture(scope='session')
def o4_coinc_bytes():
    """The O4-style ``coinc.xml`` (PSDs inside) of the real upload."""
    return gzip.decompress(read_gracedb_data('coinc_psds.xml.gz'))


@pytest.fixture
def eager(monkeypatch, broker_app):
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)


def alert(alert_type, event, data=None):
    return {'uid': event['graceid'], 'alert_type': alert_type,
            'object': event, 'data': event if data is None else data}


def to_handlers(message):
    """Hand an alert of a CBC event to its handlers, as the listener
    does (each filters it with its predicate)."""
    orchestrator_uploads.handle_cbc_event.delay(message)
    localization.localize.delay(message)


def log_alert(event, entry):
    """Hand the handlers the ``log`` alert of an upload to ``event``."""
    to_handlers(alert('log', event, entry))


def file_versions(graceid, filename):
    return [entry['file_version'] for entry in gracedb.get_log(graceid)
            if entry['filename'] == filename]


# --- pure rules -----------------------------------------------------------


@pytest.mark.parametrize('trigger, has_psds, expected', [
    ('coinc', True, True), ('psd', True, False),
    ('coinc', False, False), ('psd', False, True)])
def test_exactly_one_upload_localizes(trigger, has_psds, expected):
    assert localization.localizes(trigger, has_psds) is expected


def test_coinc_has_psds(coinc_bytes, o4_coinc_bytes):
    from gwcelery.tasks import bayestar

    assert bayestar.has_psds(bayestar.read_ligolw(o4_coinc_bytes))
    assert not bayestar.has_psds(bayestar.read_ligolw(coinc_bytes))
    # The bytes tell a coinc.xml without PSDs, gzip-compressed or not.
    assert bayestar.may_have_psds(o4_coinc_bytes)
    assert bayestar.may_have_psds(gzip.compress(o4_coinc_bytes))
    assert not bayestar.may_have_psds(coinc_bytes)


def test_o4_coinc_reads_the_same_psds(coinc_bytes, psd_bytes,
                                      o4_coinc_bytes):
    """ligo.skymap's reader finds in the O4-style file the PSDs of the
    separate psd.xml.gz."""
    import numpy as np

    from gwcelery.tasks import bayestar

    o4 = bayestar.read_event(o4_coinc_bytes)
    o3 = bayestar.read_event(coinc_bytes, psd_bytes)
    assert [s.detector for s in o4.singles] == ['H1', 'L1', 'V1']
    for a, b in zip(o4.singles, o3.singles, strict=True):
        assert np.array_equal(a.psd.data.data, b.psd.data.data)
    with pytest.raises(ValueError, match='no PSDs'):
        bayestar.read_event(coinc_bytes)


def test_missing_products_and_uploads():
    assert orchestrator_uploads.missing_products(
        {'coinc.xml'}, 'gstlal') == ['p_astro', 'em_bright']
    assert orchestrator_uploads.missing_products(
        {'coinc.xml', 'mbta.p_astro.json'}, 'MBTA') == ['em_bright']
    assert orchestrator_uploads.missing_products(
        {'pycbc.p_astro.json', 'pycbc.em_bright.json'}, 'pycbc') == []
    assert orchestrator_uploads.product_of_upload(
        'mbta.p_astro.json', 'MBTA') == 'p_astro'
    assert orchestrator_uploads.product_of_upload(
        'gstlal.em_bright.json', 'gstlal') == 'em_bright'
    # Another search's file, or ours, is not this search's own.
    assert orchestrator_uploads.product_of_upload(
        'gstlal.p_astro.json', 'MBTA') is None
    assert orchestrator_uploads.product_of_upload(
        'em_bright.json', 'gstlal') is None


@pytest.mark.parametrize('kind, contents, message', [
    ('p_astro', b'{', 'not JSON'),
    ('p_astro', b'[1]', 'not a JSON object'),
    ('p_astro', b'{"BNS": 1, "NSBH": 0, "BBH": 0}', 'Terrestrial'),
    ('p_astro', b'{"BNS": 0.5, "NSBH": 0, "BBH": 0, "Terrestrial": 0}',
     'sum to 1'),
    ('em_bright', b'{"HasNS": 2, "HasRemnant": 0}', 'HasNS is 2'),
])
def test_check_product_rejects(kind, contents, message):
    with pytest.raises(ValueError, match=message):
        orchestrator_uploads.check_product(kind, contents)


def test_choose_products_takes_the_searchs_em_bright():
    log_entries = [{'filename': 'coinc.xml', 'file_version': 0},
                   {'filename': 'gstlal.em_bright.json', 'file_version': 0},
                   {'filename': 'gstlal.p_astro.json', 'file_version': 0}]
    assert orchestrator.choose_products(log_entries) == [
        None, 'gstlal.em_bright.json', 'gstlal.p_astro.json']


# --- through the local GraceDB --------------------------------------------


@pytest.mark.usefixtures('gracedb')
def test_o3_style_creation_does_not_localize(eager, coinc_bytes):
    """Without PSDs in coinc.xml, the creation computes the products but
    leaves the localisation to the psd.xml.gz upload."""
    event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    to_handlers(alert('new', event))
    graceid = event['graceid']
    assert set(gracedb.get_labels(graceid)) == {'EMBRIGHT_READY',
                                                'PASTRO_READY'}
    assert file_versions(graceid, 'bayestar.multiorder.fits') == []
    assert json.loads(gracedb.download('gstlal.p_astro.json', graceid))[
        'BNS'] > 0.99


@pytest.mark.usefixtures('gracedb')
def test_pipeline_products_are_used(eager, coinc_bytes):
    """The search's own p_astro labels the event and is not recomputed;
    the missing em_bright is computed. An unusable em_bright file of
    another search is logged and replaced by ours."""
    event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    graceid = event['graceid']
    own = json.dumps(PIPELINE_P_ASTRO).encode()
    entry = gracedb.upload(own, 'gstlal.p_astro.json', graceid,
                           'Source classification', ['p_astro'])
    to_handlers(alert('new', event))
    log_alert(event, entry)
    assert set(gracedb.get_labels(graceid)) == {'EMBRIGHT_READY',
                                                'PASTRO_READY'}
    assert file_versions(graceid, 'gstlal.p_astro.json') == [0]
    assert gracedb.download('gstlal.p_astro.json', graceid) == own
    assert json.loads(gracedb.download('em_bright.json', graceid))[
        'HasNS'] == 1.0

    other = gracedb.create_event(coinc_bytes, 'AllSky', 'MBTA', 'CBC',
                                 filename='coinc.xml')
    entry = gracedb.upload(b'{"HasNS": "yes"}', 'mbta.em_bright.json',
                           other['graceid'], 'Source properties',
                           ['em_bright'])
    log_alert(other, entry)
    assert gracedb.get_labels(other['graceid']) == ['EMBRIGHT_READY']
    assert json.loads(gracedb.download('em_bright.json',
                                       other['graceid']))['HasNS'] == 1.0
    assert any('unusable em_bright file' in entry['comment']
               for entry in gracedb.get_log(other['graceid']))


@pytest.mark.integration
@pytest.mark.usefixtures('gracedb')
def test_o4_style_upload_localized_once_as_ligo_skymap_does(
        eager, o4_coinc_bytes, psd_bytes, tmp_path):
    """An O4-style upload: its creation starts BAYESTAR; a psd.xml.gz
    uploaded afterwards starts nothing more; the sky map has the same 90%
    credible area as ligo.skymap's ``bayestar-localize-coincs`` on the same
    file."""
    event = gracedb.create_event(o4_coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    graceid = event['graceid']
    to_handlers(alert('new', event))
    assert 'SKYMAP_READY' in gracedb.get_labels(graceid)
    log_alert(event, gracedb.upload(psd_bytes, 'psd.xml.gz', graceid, 'PSD',
                                    ['psd']))
    assert file_versions(graceid, 'bayestar.multiorder.fits') == [0]

    # The file names itself as --reference-psd, where the command line
    # tool looks for PSDs.
    coinc_path = os.path.join(GRACEDB_DATA, 'coinc_psds.xml.gz')
    command = ['bayestar-localize-coincs', '-o', str(tmp_path / 'out'),
               '--f-low', str(app.conf.bayestar_f_low),
               '--waveform', app.conf.bayestar_waveform, coinc_path]
    if not app.conf.bayestar_enable_snr_series:
        command.append('--disable-snr-series')
    subprocess.run(command, check=True, timeout=1800, capture_output=True)
    reference, = (tmp_path / 'out').glob('*.fits')

    ours = skymaps.summary(gracedb.download('bayestar.multiorder.fits',
                                            graceid))
    theirs = skymaps.summary(reference.read_bytes())
    assert ours['area_90'] == pytest.approx(theirs['area_90'], rel=1e-6)
    assert ours['distmean'] == pytest.approx(theirs['distmean'], rel=1e-6)


@pytest.mark.usefixtures('gracedb')
def test_sky_map_published_once_after_an_earlier_try(eager, coinc_bytes):
    """The localisation's inline publication wrote the sky map but lost
    GraceDB before labelling: the task that takes over finds the entry
    and only labels the event."""
    event = gracedb.create_event(coinc_bytes, 'AllSky', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    graceid = event['graceid']
    gracedb.upload(b'FITS', 'bayestar.multiorder.fits', graceid,
                   'Sky localization complete (BAYESTAR)',
                   ['sky_loc', 'public'])
    localization.publish_skymap.delay(b'FITS', graceid, earlier_try=True)
    assert file_versions(graceid, 'bayestar.multiorder.fits') == [0]
    assert 'SKYMAP_READY' in gracedb.get_labels(graceid)
    # Without an earlier try, a second publication is a new version.
    localization.publish_skymap.delay(b'FITS', graceid)
    assert file_versions(graceid, 'bayestar.multiorder.fits') == [0, 1]
