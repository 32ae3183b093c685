"""Sky map products: all-sky and volume plots, FITS header summary.

Every task takes the multi-order FITS sky map as bytes. Figures are drawn
on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no
pyplot, no display, no global state), so they are safe in any worker.
"""

import io
import logging
import os
import tempfile

import numpy as np

from .. import app
from ..templates import render

log = logging.getLogger(__name__)

#: Credible levels (per cent) drawn as contours and quoted as areas.
CONTOUR_LEVELS = (50, 90)


def read_multiorder(fits_bytes, distances=False):
    """Read a multi-order FITS sky map from bytes into an astropy table
    (with ``meta`` from the header)."""
    from ligo.skymap.io import fits

    with tempfile.TemporaryDirectory() as tmpdir:
        filename = os.path.join(tmpdir, 'skymap.multiorder.fits')
        with open(filename, 'wb') as f:
            f.write(fits_bytes)
        return fits.read_sky_map(filename, moc=True, distances=distances)


def credible_levels(skymap):
    """Per-pixel greedy credible level (0--100) and pixel areas (sr)."""
    from ligo.skymap import moc, postprocess

    area = moc.uniq2pixarea(skymap['UNIQ'])
    prob = skymap['PROBDENSITY'] * area
    levels = 100 * postprocess.find_greedy_credible_levels(
        prob, skymap['PROBDENSITY'])
    return levels, area


def summary(fits_bytes):
    """Headline numbers of a sky map: ``{'area_50', 'area_90'}`` in
    square degrees, and ``distmean``/``diststd`` in Mpc when present,
    ``instruments`` and ``creator``."""
    skymap = read_multiorder(fits_bytes)
    levels, area = credible_levels(skymap)
    order = np.argsort(levels)
    cumulative_area = np.cumsum(area[order]) * np.rad2deg(1) ** 2
    result = {}
    for level in CONTOUR_LEVELS:
        index = np.searchsorted(levels[order], level, side='right')
        result[f'area_{level}'] = float(
            cumulative_area[min(index, len(order) - 1)])
    for key in ('distmean', 'diststd'):
        if key in skymap.meta:
            result[key] = float(skymap.meta[key])
    result['instruments'] = sorted(skymap.meta.get('instruments', ()))
    result['creator'] = skymap.meta.get('creator')
    return result


def _png_bytes(fig, dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format='png', dpi=dpi)
    return out.getvalue()


def allsky_figure(fits_bytes):
    """Draw the sky map on an all-sky Mollweide projection (right
    ascension in hours) with its 50% and 90% credible contours and a
    summary (areas, distance); return the
    :class:`~matplotlib.figure.Figure`."""
    from astropy.table import Table
    from ligo.skymap import plot  # noqa: F401  (registers the projections)
    from matplotlib.figure import Figure

    skymap = read_multiorder(fits_bytes)
    levels, _ = credible_levels(skymap)
    stats = summary(fits_bytes)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot(projection='astro hours mollweide')
    ax.grid()
    density = Table({'UNIQ': skymap['UNIQ'],
                     'PROBDENSITY': skymap['PROBDENSITY']
                     * np.deg2rad(1) ** 2})  # per square degree
    ax.imshow_hpx((density, 'ICRS'), vmin=0, order='nearest-neighbor',
                  cmap='cylon')
    contours = ax.contour_hpx(
        (Table({'UNIQ': skymap['UNIQ'], 'CLS': levels}), 'ICRS'),
        levels=CONTOUR_LEVELS, colors='k', linewidths=0.5,
        order='nearest-neighbor')
    ax.clabel(contours, fmt='%g%%', fontsize=6, inline=True)
    text = [str(skymap.meta.get('objid', ''))]
    if stats['instruments']:
        text.append('instruments: ' + ', '.join(stats['instruments']))
    for level in CONTOUR_LEVELS:
        text.append(f"{level}% area: {stats[f'area_{level}']:.0f} deg²")
    if 'distmean' in stats:
        text.append(f"distance: {stats['distmean']:.0f} ± "
                    f"{stats['diststd']:.0f} Mpc")
    ax.text(1, 1, '\n'.join(text), transform=ax.transAxes, ha='right',
            va='bottom', fontsize=8)
    return fig


@app.task(shared=False)
def plot_allsky(fits_bytes):
    """Return the PNG bytes of the all-sky Mollweide plot with the 50% and
    90% contours (:func:`allsky_figure`), at
    :obj:`~gwcelery.conf.skymap_plot_dpi`."""
    return _png_bytes(allsky_figure(fits_bytes), app.conf.skymap_plot_dpi)


@app.task(queue='openmp', shared=False)
def plot_volume(fits_bytes):
    """Render the 3-D posterior in three orthogonal projections along its
    principal axes, with the 50% and 90% contours and the marginal distance
    distribution; return the PNG bytes.

    The projection images are
    :obj:`~gwcelery.conf.volume_plot_resolution` pixels square: the cost
    grows with its square (ligo.skymap's default took ten minutes here).
    """
    from ligo.skymap import moc, plot  # noqa: F401  (registers 'cylon')
    from ligo.skymap.distance import (
        marginal_pdf,
        parameters_to_marginal_moments,
        principal_axes_moc,
        volume_render,
    )
    from matplotlib.figure import Figure

    skymap = read_multiorder(fits_bytes, distances=True)
    prob = moc.uniq2pixarea(skymap['UNIQ']) * skymap['PROBDENSITY']
    mean, std = parameters_to_marginal_moments(
        prob, skymap['DISTMU'], skymap['DISTSIGMA'])
    max_distance = mean + 2.5 * std
    rotation = np.ascontiguousarray(principal_axes_moc(skymap))

    resolution = app.conf.volume_plot_resolution
    axis_values = np.linspace(-max_distance, max_distance, resolution)
    xx, yy = np.meshgrid(axis_values, axis_values)
    extent = [-max_distance, max_distance, -max_distance, max_distance]

    fig = Figure(figsize=(6, 6))
    grid = fig.add_gridspec(2, 2, left=0.01, right=0.99, bottom=0.01,
                            top=0.99, wspace=0.05, hspace=0.05)
    # (horizontal axis, vertical axis, grid cell) of each projection
    faces = ((1, 0, (0, 0)), (0, 2, (1, 1)), (1, 2, (1, 0)))
    for axis0, axis1, cell in faces:
        density = volume_render(xx.ravel(), yy.ravel(), max_distance,
                                axis0, axis1, rotation, skymap
                                ).reshape(xx.shape)
        ax = fig.add_subplot(grid[cell], aspect=1)
        ax.imshow(density, origin='lower', extent=extent, cmap='cylon')
        flat = density.ravel()
        order = np.argsort(flat)[::-1]
        cumulative = np.empty_like(flat)
        cumulative[order] = 100 * np.cumsum(flat[order]) / flat.sum()
        contours = ax.contour(xx, yy, cumulative.reshape(density.shape),
                              levels=CONTOUR_LEVELS, linewidths=0.5,
                              colors='k')
        ax.plot([0], [0], marker='o', markersize=3, color='k')  # Earth
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        if cell == (1, 0):
            ax.invert_xaxis()
    ax.clabel(contours, fmt='%d%%', fontsize=6)
    ax.plot([0.0625, 0.3125], [0.0625, 0.0625], color='k', linewidth=1,
            transform=ax.transAxes)
    ax.text(0.0625, 0.08, f'{0.5 * max_distance:.0f} Mpc', fontsize=7,
            transform=ax.transAxes)

    distance_grid = fig.add_gridspec(
        5, 5, left=0.51, right=0.99, bottom=0.51, top=0.99)
    ax = fig.add_subplot(distance_grid[1:-1, 1:-1])
    distance = np.linspace(0, max_distance, 200)
    ax.fill_between(distance, marginal_pdf(
        distance, prob, skymap['DISTMU'], skymap['DISTSIGMA'],
        skymap['DISTNORM']), alpha=0.5)
    ax.set_xlim(0, max_distance)
    ax.set_ylim(bottom=0)
    ax.set_yticks([])
    ax.set_xlabel('luminosity distance (Mpc)', fontsize=8)
    ax.tick_params(labelsize=7)
    return _png_bytes(fig, app.conf.volume_plot_dpi)


@app.task(shared=False)
def fits_header_html(fits_bytes, filename):
    """Return an HTML page listing the FITS header of the sky map (the
    ``SKYMAP`` extension: creator, instruments, distance, run time...)."""
    from astropy.io import fits

    with fits.open(io.BytesIO(fits_bytes)) as hdus:
        header = hdus[1].header if len(hdus) > 1 else hdus[0].header
        cards = [(card.keyword, str(card.value), card.comment)
                 for card in header.cards if card.keyword]
    return render('fits_header.html', filename=filename, cards=cards)
