"""RAVEN arithmetic: windows, rates, FARs and sky map overlaps, checked
against values computed by hand."""

import os
import tempfile

import healpy as hp
import numpy as np
import pytest
from astropy.table import Table
from ligo.skymap.io import fits
from ligo.skymap.moc import nest2uniq

from gwcelery import app
from gwcelery.external import coincidence
from gwcelery.tasks import external_skymaps, raven_rules

YEAR = 365 * 86400


def superevent(group, pipeline):
    return {'preferred_event_data': {'group': group, 'pipeline': pipeline}}


@pytest.mark.parametrize('event,group', [
    (superevent('CBC', 'gstlal'), 'CBC'),
    (superevent('Burst', 'CWB'), 'Burst'),
    (superevent('Test', 'gstlal'), 'CBC'),
    (superevent('Test', 'CWB'), 'Burst'),
    (superevent('Test', 'oLIB'), 'Burst'),
])
def test_gw_group(event, group):
    assert raven_rules.gw_group(event) == group


def test_default_windows():
    conf = app.conf
    assert coincidence.window(conf, 'GRB', 'CBC') == (-5, 1)
    assert coincidence.window(conf, 'SubGRB', 'CBC') == (-5, 1)
    assert coincidence.window(conf, 'GRB', 'Burst') == (-600, 60)
    assert coincidence.window(conf, 'Supernova', 'CBC') == (-10, 10)
    assert coincidence.window(conf, 'Supernova', 'Burst') == (-10, 10)


@pytest.mark.parametrize('search,group,t_0_minus_t_ext,coincident', [
    # GW170817: GRB 170817A came 1.7 s after the merger.
    ('GRB', 'CBC', -1.7, True),
    ('GRB', 'CBC', -5.0, True),
    ('GRB', 'CBC', -5.1, False),
    ('GRB', 'CBC', 1.0, True),
    ('GRB', 'CBC', 1.5, False),
    ('GRB', 'Burst', -500, True),
    ('GRB', 'Burst', 59, True),
    ('GRB', 'Burst', 61, False),
    ('Supernova', 'CBC', -9.5, True),
    ('Supernova', 'Burst', 10.5, False),
])
def test_in_window(search, group, t_0_minus_t_ext, coincident):
    t_ext = 1e9
    assert coincidence.in_window(app.conf, search, group,
                                 t_ext + t_0_minus_t_ext, t_ext) is coincident


def test_search_spans():
    conf = app.conf
    # External triggers around a CBC superevent: GRBs from 1 s before to
    # 5 s after, neutrinos within 10 s.
    assert coincidence.external_search_span(conf, 'CBC') == (-10, 10)
    assert coincidence.external_search_span(conf, 'Burst') == (-60, 600)
    # Superevents around a GRB: CBC or burst windows.
    assert coincidence.superevent_search_span(conf, 'GRB') == (-600, 60)
    assert coincidence.superevent_search_span(conf, 'Supernova') == (-10, 10)


@pytest.mark.parametrize('search,rate', [
    ('GRB', (236 + 65 + 5 + 5) / YEAR),
    ('MDC', (236 + 65 + 5 + 5) / YEAR),
    ('SubGRB', (236 + 65 + 5 + 5 + 65) / YEAR),
    ('Supernova', 1 / (100 * YEAR)),
])
def test_external_rate(search, rate):
    assert coincidence.external_rate(app.conf, search) == pytest.approx(rate)


@pytest.mark.parametrize('search,group,gw_far,expected', [
    # 6 s * 311/yr * 1e-6 Hz
    ('GRB', 'CBC', 1e-6, 6 * 311 / 31536000 * 1e-6),
    ('GRB', 'CBC', 1e-6, 5.917047184170472e-11),
    # 6 s * 376/yr * 1e-6 Hz
    ('SubGRB', 'CBC', 1e-6, 7.153729071537291e-11),
    # 660 s * 311/yr * 1e-8 Hz
    ('GRB', 'Burst', 1e-8, 6.508688483003551e-11),
    # 20 s * 1/(100 yr) * 1e-5 Hz
    ('Supernova', 'CBC', 1e-5, 6.341958396752917e-14),
])
def test_temporal_far(search, group, gw_far, expected):
    conf = app.conf
    start, end = coincidence.window(conf, search, group)
    rate = coincidence.external_rate(conf, search)
    assert coincidence.temporal_far(gw_far, rate, start, end) == (
        pytest.approx(expected, rel=1e-12))


def test_spacetime_far():
    assert coincidence.spacetime_far(6e-11, 20.0) == pytest.approx(3e-12)
    assert coincidence.spacetime_far(6e-11, 0.0) is None
    assert coincidence.spacetime_far(6e-11, None) is None


def test_alert_threshold():
    conf = app.conf
    # CBC: FAR * 6 <= 1/(60 days) = 1.929e-7 Hz
    assert coincidence.passes_alert_threshold(conf, 3.2e-8, 'CBC')
    assert not coincidence.passes_alert_threshold(conf, 3.3e-8, 'CBC')
    # Burst: FAR * 5 <= 1/yr = 3.171e-8 Hz
    assert coincidence.passes_alert_threshold(conf, 6.3e-9, 'Burst')
    assert not coincidence.passes_alert_threshold(conf, 6.4e-9, 'Burst')


# --- sky maps ----------------------------------------------------------


def flat_fits(prob):
    return external_skymaps._fits_bytes(prob)


def moc_fits(prob):
    """A multi-order sky map (all pixels at one order) of a nested map."""
    nside = hp.npix2nside(len(prob))
    order = np.int8(np.log2(nside))
    table = Table({'UNIQ': nest2uniq(order, np.arange(len(prob))),
                   'PROBDENSITY': prob / hp.nside2pixarea(nside)})
    with tempfile.TemporaryDirectory() as tmp:
        filename = os.path.join(tmp, 'skymap.multiorder.fits')
        fits.write_sky_map(filename, table)
        with open(filename, 'rb') as f:
            return f.read()


def test_disk():
    nside = 64
    prob = external_skymaps.disk(140.0, -39.0, 10.0, nside)
    assert prob.sum() == pytest.approx(1)
    inside = np.flatnonzero(prob)
    # Uniform, and every pixel centre of the disk is included.
    assert np.all(prob[inside] == prob[inside[0]])
    centres = hp.query_disc(nside, hp.ang2vec(140.0, -39.0, lonlat=True),
                            np.deg2rad(10.0), nest=True)
    assert set(centres) <= set(inside)
    # The pixel area of the disk is about pi (10 deg)^2.
    area = len(inside) * hp.nside2pixarea(nside, degrees=True)
    assert np.pi * 100 < area < 1.3 * np.pi * 100


def test_disk_smaller_than_a_pixel():
    prob = external_skymaps.disk(268.87, -20.3153, 0.05, 128)
    assert prob.sum() == pytest.approx(1)
    pixel = hp.ang2pix(128, 268.87, -20.3153, nest=True, lonlat=True)
    assert prob[pixel] > 0


def test_create_disk_skymap_round_trip(monkeypatch):
    monkeypatch.setitem(app.conf, 'external_skymap_nside', 32)
    data = external_skymaps.create_disk_skymap(
        140.05, -39.05, 5.6, gpstime=1211191124.31, graceid='E1')
    assert data[:2] == b'\x1f\x8b'  # gzip
    prob, uniq = external_skymaps.read_skymap(data)
    assert uniq is None
    assert len(prob) == hp.nside2npix(32)
    assert prob == pytest.approx(external_skymaps.disk(140.05, -39.05, 5.6,
                                                       32))


def test_overlap_of_a_disk_with_itself_is_its_inverse_sky_fraction():
    nside = 64
    prob = external_skymaps.disk(140.0, -39.0, 8.0, nside)
    npix_disk = np.count_nonzero(prob)
    expected = hp.nside2npix(nside) / npix_disk  # 4 pi / disk area
    assert external_skymaps.overlap_integral(
        flat_fits(prob), flat_fits(prob)) == pytest.approx(expected)
    assert external_skymaps.overlap_integral(
        moc_fits(prob), flat_fits(prob)) == pytest.approx(expected)


def test_overlap_with_uniform_map_is_one():
    nside = 64
    uniform = np.full(hp.nside2npix(nside), 1 / hp.nside2npix(nside))
    prob = external_skymaps.disk(10.0, 20.0, 5.0, nside)
    assert external_skymaps.overlap_integral(
        flat_fits(uniform), flat_fits(prob)) == pytest.approx(1)
    assert external_skymaps.overlap_integral(
        moc_fits(uniform), flat_fits(prob)) == pytest.approx(1)


def test_disjoint_sky_maps_do_not_overlap():
    nside = 64
    gw = external_skymaps.disk(10.0, 20.0, 5.0, nside)
    ext = external_skymaps.disk(190.0, -20.0, 5.0, nside)
    assert external_skymaps.overlap_integral(
        flat_fits(gw), flat_fits(ext)) == 0
    assert coincidence.spacetime_far(1e-10, 0.0) is None
