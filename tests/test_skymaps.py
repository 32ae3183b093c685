"""Sky map products from the real BAYESTAR map of the real upload."""

import io

import numpy as np
import pytest
from astropy.io import fits
from matplotlib.image import imread

from gwcelery import app
from gwcelery.tasks import skymaps

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_pixels(png):
    assert png.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(png), format='png')


def test_summary_areas_are_nested(bayestar_skymap):
    summary = skymaps.summary(bayestar_skymap)
    assert summary['creator'] == 'BAYESTAR'
    assert 0 < summary['area_50'] < summary['area_90']
    assert summary['diststd'] > 0


def test_allsky_figure_has_50_and_90_percent_contours(bayestar_skymap):
    fig = skymaps.allsky_figure(bayestar_skymap)
    ax, = fig.axes
    assert ax.name == 'astro hours mollweide'
    contour_sets = [artist for artist in ax.get_children()
                    if hasattr(artist, 'levels')]
    assert [list(c.levels) for c in contour_sets] == [[50, 90]]
    text = '\n'.join(t.get_text() for t in ax.texts)
    assert 'G298048' in text and '90% area' in text


def test_plot_allsky_png(bayestar_skymap, monkeypatch):
    monkeypatch.setitem(app.conf, 'skymap_plot_dpi', 50)
    pixels = png_pixels(skymaps.plot_allsky(bayestar_skymap))
    assert pixels.shape[:2] == (225, 400)  # 8 x 4.5 inches at 50 dpi
    assert np.ptp(pixels[..., :3]) > 0.5  # not a blank image


def test_plot_volume_png(bayestar_skymap, monkeypatch):
    monkeypatch.setitem(app.conf, 'volume_plot_resolution', 16)
    monkeypatch.setitem(app.conf, 'volume_plot_dpi', 40)
    pixels = png_pixels(skymaps.plot_volume(bayestar_skymap))
    assert pixels.shape[:2] == (240, 240)  # 6 x 6 inches at 40 dpi
    assert np.ptp(pixels[..., :3]) > 0.5


def test_fits_header_html(bayestar_skymap):
    html = skymaps.fits_header_html(bayestar_skymap,
                                    'bayestar.multiorder.fits')
    with fits.open(io.BytesIO(bayestar_skymap)) as hdus:
        header = hdus[1].header
    assert html.startswith('<!DOCTYPE html>')
    assert '<title>FITS header of bayestar.multiorder.fits</title>' in html
    for keyword in ('OBJECT', 'CREATOR', 'DISTMEAN', 'RUNTIME'):
        assert f'<td>{keyword}</td>' in html
    assert f'<td class="value">{header["OBJECT"]}</td>' in html


def test_fits_header_html_escapes(bayestar_skymap):
    html = skymaps.fits_header_html(bayestar_skymap, '<b>x</b>')
    assert '<b>x</b>' not in html and '&lt;b&gt;x&lt;/b&gt;' in html


@pytest.mark.parametrize('task', [skymaps.plot_allsky,
                                  skymaps.fits_header_html])
def test_bad_fits_raises(task):
    args = (b'not a FITS file',) + (('x.fits',) if task is
                                    skymaps.fits_header_html else ())
    with pytest.raises(OSError):
        task(*args)
