"""The combined sky map of a GW candidate and a coincident external
trigger.

The two localisations are independent measurements of one source, so the
combined posterior is their product, normalised (as ligo.skymap's
``ligo-skymap-combine`` does for flat maps). Here the GW map keeps its
multi-order (MOC) grid and its distance layers: each GW pixel takes the
external map's density over it, and a GW pixel coarser than the external
map over which the external map is not uniform (the edge of an error
circle) is split into the external map's pixels, so that the combined map
is as sharp as either input. :func:`combine` does the arithmetic,
:func:`make_combined_skymap` uploads the result to the superevent and
labels it ``COMBINEDSKYMAP_READY``.
"""

import io
import tempfile

import astropy_healpix as ah
import numpy as np
from astropy.table import Table, vstack
from astropy.time import Time
from celery import chain, group
from ligo.skymap import moc
from ligo.skymap.distance import parameters_to_marginal_moments
from ligo.skymap.io import fits

from .. import app
from . import gracedb

COMBINED_SKYMAP_FILENAME = 'combined-ext.multiorder.fits'
"""The combined sky map, uploaded to the superevent."""

COMBINEDSKYMAP_READY = 'COMBINEDSKYMAP_READY'
"""Label of a superevent once its combined sky map is uploaded."""

DISTANCE_COLUMNS = ('DISTMU', 'DISTSIGMA', 'DISTNORM')


def _read(filecontents, **kwargs):
    """:func:`ligo.skymap.io.fits.read_sky_map` of FITS bytes, gzipped or
    not (astropy recognises gzip only in files)."""
    with tempfile.NamedTemporaryFile(suffix='.fits') as f:
        f.write(filecontents)
        f.flush()
        return fits.read_sky_map(f.name, **kwargs)


def _external_density(filecontents):
    """The external map as ``(order, probability per steradian per nested
    pixel)``."""
    prob, _ = _read(filecontents, nest=True)
    nside = ah.npix_to_nside(len(prob))
    order = int(np.log2(nside))
    return order, np.asarray(prob) / ah.nside_to_pixel_area(nside).value


def _split(gw, orders, ipix, ext_order, ext_density):
    """Per GW pixel, the external density, plus the rows that replace the
    coarse GW pixels over which the external map is not uniform.

    Returns ``(keep, ext_values, children)``: a mask of the GW rows kept,
    the external density of the kept rows, and a table of the children
    (with their external density in column ``EXT``)."""
    ext_values = np.empty(len(gw))
    keep = np.ones(len(gw), dtype=bool)
    children = []
    fine = orders >= ext_order
    ext_values[fine] = ext_density[
        ipix[fine] >> (2 * (orders[fine] - ext_order))]
    for order in np.unique(orders[~fine]):
        rows = np.flatnonzero(orders == order)
        # In nested ordering, the pixels of the external map inside the GW
        # pixel (order, i) are the i-th block of 4 ** (ext_order - order).
        blocks = ext_density.reshape(-1, 4 ** int(ext_order - order))
        block = blocks[ipix[rows]]
        uniform = block.min(axis=1) == block.max(axis=1)
        ext_values[rows[uniform]] = block[uniform, 0]
        split = rows[~uniform]
        keep[split] = False
        if len(split):
            size = block.shape[1]
            first = ipix[split] << (2 * int(ext_order - order))
            child_ipix = (first[:, None] + np.arange(size)).ravel()
            part = gw[np.repeat(split, size)]
            part['UNIQ'] = moc.nest2uniq(np.int8(ext_order), child_ipix)
            part['EXT'] = ext_density[child_ipix]
            children.append(part)
    return keep, ext_values, children


def combine(gw_skymap, ext_skymap):
    """The combined multi-order sky map (an :class:`astropy.table.Table`
    with ``UNIQ``, ``PROBDENSITY`` and the GW map's distance columns) of a
    GW sky map (multi-order or flat FITS bytes) and an external one (flat
    FITS bytes). Raises :class:`ValueError` if they do not overlap."""
    gw = _read(gw_skymap, moc=True)
    ext_order, ext_density = _external_density(ext_skymap)
    orders, ipix = moc.uniq2nest(np.asarray(gw['UNIQ']))
    keep, ext_values, children = _split(gw, orders, ipix, ext_order,
                                        ext_density)
    kept = gw[keep]
    kept['EXT'] = ext_values[keep]
    table = vstack([kept, *children], metadata_conflicts='silent')
    table['PROBDENSITY'] = table['PROBDENSITY'] * table['EXT']
    del table['EXT']
    area = moc.uniq2pixarea(np.asarray(table['UNIQ']))
    norm = np.sum(table['PROBDENSITY'] * area)
    if not norm > 0:
        raise ValueError('the GW and external sky maps do not overlap')
    table['PROBDENSITY'] /= norm
    table.sort('UNIQ')
    table.meta = dict(gw.meta)
    if set(DISTANCE_COLUMNS) <= set(table.colnames):
        prob = table['PROBDENSITY'] * moc.uniq2pixarea(
            np.asarray(table['UNIQ']))
        good = np.isfinite(table['DISTMU']) & np.isfinite(
            table['DISTSIGMA'])
        mean, std = parameters_to_marginal_moments(
            np.asarray(prob[good]), np.asarray(table['DISTMU'][good]),
            np.asarray(table['DISTSIGMA'][good]))
        table.meta.update(distmean=mean, diststd=std)
    return table


def combined_fits(gw_skymap, ext_skymap, objid):
    """The FITS bytes of :func:`combine`'s map, its header naming
    ``objid`` (the superevent)."""
    table = combine(gw_skymap, ext_skymap)
    table.meta.update(objid=objid, creator='gwcelery',
                      origin='LIGO/Virgo/KAGRA',
                      gps_creation_time=Time.now().gps)
    table.meta.pop('HISTORY', None)
    buffer = io.BytesIO()
    fits.write_sky_map(buffer, Table(table, meta=table.meta))
    return buffer.getvalue()


@app.task(shared=False)
def combine_task(skymaps, superevent_id):
    """Given ``[gw_skymap, ext_skymap]`` (FITS bytes), the combined sky
    map's bytes (:func:`combined_fits`)."""
    gw_skymap, ext_skymap = skymaps
    return combined_fits(gw_skymap, ext_skymap, superevent_id)


def make_combined_skymap(superevent_id, ext_id, gw_skymap_task,
                         ext_skymap_task):
    """The canvas that fetches both sky maps (the signatures given),
    combines them, uploads the result to the superevent (tags
    ``ext_coinc``) and labels it ``COMBINEDSKYMAP_READY``."""
    return chain(
        group(gw_skymap_task, ext_skymap_task),
        combine_task.s(superevent_id),
        gracedb.upload.s(
            COMBINED_SKYMAP_FILENAME, superevent_id,
            f'Combined sky map of the GW candidate and {ext_id}',
            # Not sky_loc: it is no GW sky map, for the coincidence search
            # or for the alerts' GW_SKYMAP.
            ['ext_coinc']),
        gracedb.create_label.si(COMBINEDSKYMAP_READY, superevent_id))
