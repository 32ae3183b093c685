"""Sky maps of external triggers, and their overlap with GW sky maps."""

import os
import tempfile

import astropy.io.fits
import healpy as hp
import numpy as np
from ligo.raven.search import skymap_overlap_integral
from ligo.skymap.io import fits

from .. import app


def disk(ra, dec, radius, nside):
    """Probability per pixel of a uniform disk on a nested HEALPix grid.

    The disk is centred on (`ra`, `dec`) and has radius `radius`, all in
    degrees. Every pixel that the disk touches gets the same probability,
    so a disk smaller than a pixel still keeps the pixel(s) it falls in.
    """
    centre = hp.ang2vec(ra, dec, lonlat=True)
    pixels = hp.query_disc(nside, centre, np.deg2rad(radius),
                           inclusive=True, nest=True)
    prob = np.zeros(hp.nside2npix(nside))
    prob[pixels] = 1 / len(pixels)
    return prob


def _fits_bytes(prob, **metadata):
    with tempfile.TemporaryDirectory() as tmp:
        filename = os.path.join(tmp, 'skymap.fits.gz')
        fits.write_sky_map(filename, prob, nest=True, **metadata)
        with open(filename, 'rb') as f:
            return f.read()


def skymap_filename(pipeline):
    """Name of the sky map file of an external event of `pipeline`."""
    return f'{pipeline.lower()}_skymap.fits.gz'


@app.task(shared=False)
def create_disk_skymap(ra, dec, radius, gpstime=None, graceid=None):
    """Make the gzipped FITS sky map of an external trigger's error circle.

    A uniform disk (see :func:`disk`) at the resolution
    :obj:`~gwcelery.conf.external_skymap_nside`. Returns the file's bytes.
    """
    prob = disk(ra, dec, radius, app.conf['external_skymap_nside'])
    metadata = {'creator': 'gwcelery', 'origin': 'LIGO/Virgo/KAGRA'}
    if gpstime is not None:
        metadata['gps_time'] = gpstime
    if graceid is not None:
        metadata['objid'] = graceid
    return _fits_bytes(prob, **metadata)


def read_skymap(filecontents):
    """Read a (gzipped) FITS sky map given as bytes.

    Returns ``(values, uniq)``: for a multi-order map, the probability
    density per steradian and the NUNIQ pixel indices; for a flat map,
    the probability per nested pixel and ``None``.
    """
    with tempfile.NamedTemporaryFile(suffix='.fits') as f:
        f.write(filecontents)
        f.flush()
        if astropy.io.fits.getheader(f.name, 1).get('ORDERING') == 'NUNIQ':
            table = fits.read_sky_map(f.name, moc=True)
            return (np.asarray(table['PROBDENSITY']),
                    np.asarray(table['UNIQ']))
        prob, _ = fits.read_sky_map(f.name, nest=True)
        return np.asarray(prob), None


def overlap_integral(gw_skymap, ext_skymap):
    """Sky map overlap integral of a GW and an external sky map (bytes).

    The Bayes factor for a common sky position, :math:`I_\\Omega = 4\\pi
    \\int p_{GW}(\\Omega) p_{ext}(\\Omega) d\\Omega` (Ashton et al. 2018,
    ApJ 860, 6, doi:10.3847/1538-4357/aabfd2), computed with ligo-raven's
    :func:`ligo.raven.search.skymap_overlap_integral`: 1 when one map is
    uniform, 0 when the maps do not overlap. The GW map may be multi-order
    or flat; the external map is flat (nested).
    """
    gw_values, gw_uniq = read_skymap(gw_skymap)
    ext_prob, ext_uniq = read_skymap(ext_skymap)
    if ext_uniq is not None:
        raise ValueError('the external sky map must be a flat HEALPix map')
    if gw_uniq is None:
        return float(skymap_overlap_integral(
            gw_values, ext_prob, se_nested=True, ext_nested=True))
    return float(skymap_overlap_integral(
        gw_values, ext_prob, se_skymap_uniq=gw_uniq, ext_nested=True))
