"""BAYESTAR on the real GraceDB upload (coinc.xml + psd.xml.gz)."""

import io

import numpy as np
import pytest
from astropy.io import fits
from ligo.skymap import moc

from gwcelery.tasks import bayestar, skymaps


def test_read_event(coinc_bytes, psd_bytes):
    event = bayestar.read_event(coinc_bytes, psd_bytes)
    assert [single.detector for single in event.singles] == ['H1', 'L1', 'V1']
    assert event.template_args['mass1'] == pytest.approx(1.355607)
    assert event.singles[0].psd is not None


def test_read_event_rejects_a_file_without_coinc(psd_bytes):
    empty = b'<?xml version="1.0"?><LIGO_LW></LIGO_LW>'
    with pytest.raises(ValueError, match='coinc'):
        bayestar.read_event(empty, psd_bytes)


def test_localize_multiorder_fits(bayestar_skymap):
    with fits.open(io.BytesIO(bayestar_skymap)) as hdus:
        header = hdus[1].header
        columns = hdus[1].data.columns.names
    assert header['OBJECT'] == 'G298048'
    assert header['CREATOR'] == 'BAYESTAR'
    assert header['ORDERING'] == 'NUNIQ'
    assert header['RUNTIME'] > 0
    assert set(header['INSTRUME'].split(',')) == {'H1', 'L1', 'V1'}
    assert {'UNIQ', 'PROBDENSITY', 'DISTMU', 'DISTSIGMA'} <= set(columns)

    table = skymaps.read_multiorder(bayestar_skymap)
    total = np.sum(table['PROBDENSITY'] * moc.uniq2pixarea(table['UNIQ']))
    assert total == pytest.approx(1, rel=1e-3)


def test_localize_localises(bayestar_skymap):
    """A three-detector BNS at network SNR 15.6: a few hundred square
    degrees at most, at about 110 Mpc (what BAYESTAR gives here)."""
    summary = skymaps.summary(bayestar_skymap)
    assert 0 < summary['area_50'] < summary['area_90'] < 500
    assert 80 < summary['distmean'] < 140
    assert summary['instruments'] == ['H1', 'L1', 'V1']


def test_localize_without_detectors_fails(coinc_bytes, psd_bytes):
    """With every detector disabled there is nothing to localise: the task
    raises (the orchestrator then reports the failure) instead of
    returning a map."""
    with pytest.raises(ValueError):
        bayestar.localize(coinc_bytes, psd_bytes, 'G1',
                          disabled_detectors=['H1', 'L1', 'V1'])


def test_omp_threads_setting(monkeypatch):
    from gwcelery import app

    monkeypatch.setitem(app.conf, 'bayestar_omp_threads', 3)
    assert bayestar._omp_threads() == 3
    monkeypatch.setitem(app.conf, 'bayestar_omp_threads', None)
    assert bayestar._omp_threads() >= 1


def test_localize_bbh():
    """A 31 + 26 solar-mass BBH (a shipped mock signal): the default
    waveform must not need data files that the PyPI lalsuite lacks (as
    SEOBNRv4_ROM, which ligo.skymap's default picks for it, does)."""
    from gwcelery.tasks import first2years

    skymap = bayestar.localize(first2years.load_candidate(4, 'gstlal'),
                               first2years.load_psd(), 'G4')
    summary = skymaps.summary(skymap)
    assert 0 < summary['area_90'] < 1000
    assert summary['distmean'] > 0
