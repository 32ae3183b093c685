"""Rapid sky localisation with BAYESTAR (ligo.skymap).

:func:`localize` runs on the ``openmp`` queue: the openmp worker takes one
task at a time and gives it every core through OpenMP.
"""

import gzip
import io
import logging
import os
import tempfile

from .. import app

log = logging.getLogger(__name__)

#: Name of the sky map file that :func:`localize`'s output is uploaded as.
SKYMAP_FILENAME = 'bayestar.multiorder.fits'

#: The candidate file that CBC pipelines upload.
COINC_FILENAME = 'coinc.xml'

#: The noise spectra that O3-style CBC pipelines upload after the
#: candidate.
PSD_FILENAME = 'psd.xml.gz'


def _omp_threads():
    """Number of OpenMP threads for BAYESTAR: the setting, else every core
    this process may run on."""
    configured = app.conf.bayestar_omp_threads
    if configured:
        return int(configured)
    return len(os.sched_getaffinity(0))


def read_ligolw(xml_bytes):
    """Parse a LIGO-LW document (optionally gzip-compressed), old style
    ``ilwd:char`` ids included, as ligo.skymap's own reader does."""
    from igwn_ligolw import utils
    from igwn_ligolw.ligolw import LIGOLWContentHandler
    from ligo.skymap.util import ilwd

    @ilwd.use_in
    class ContentHandler(LIGOLWContentHandler):
        pass

    return utils.load_fileobj(io.BytesIO(xml_bytes),
                              contenthandler=ContentHandler)


def has_psds(doc):
    """Whether a parsed LIGO-LW document carries noise PSDs (the
    ``REAL8FrequencySeries`` elements that ``lal.series`` writes), as an
    O4 search's ``coinc.xml`` does."""
    from igwn_ligolw import ligolw

    return any(element.getAttribute('Name') == 'REAL8FrequencySeries'
               for element in doc.getElementsByTagName(ligolw.LIGO_LW.tagName)
               if element.hasAttribute('Name'))


def may_have_psds(coinc_bytes):
    """Whether a ``coinc.xml`` (optionally gzip-compressed) may carry PSDs
    (:func:`has_psds`), told from its bytes without parsing it: a document
    whose text never names ``REAL8FrequencySeries`` has none."""
    if coinc_bytes[:2] == b'\x1f\x8b':
        coinc_bytes = gzip.decompress(coinc_bytes)
    return b'REAL8FrequencySeries' in coinc_bytes


def read_event(coinc, psd_bytes=None):
    """Return the single coincidence of a GraceDB CBC upload as a
    :class:`ligo.skymap.io.events.Event`.

    ``coinc`` is the LIGO-LW ``coinc.xml``, as bytes or as the document
    that :func:`read_ligolw` parsed from them. ``psd_bytes`` is the
    (optionally gzip-compressed) LIGO-LW PSD file uploaded beside it (O3
    style), or ``None`` when the PSDs are inside ``coinc.xml`` (O4 style).
    Either way ligo.skymap's own reader reads them.
    """
    from ligo.skymap.io.events import ligolw

    doc = read_ligolw(coinc) if isinstance(coinc, bytes) else coinc
    if psd_bytes is not None:
        psd_file = io.BytesIO(psd_bytes)
    elif has_psds(doc):
        psd_file = doc
    else:
        raise ValueError('coinc.xml has no PSDs and no psd.xml.gz was given')
    source = ligolw.open(doc, psd_file=psd_file, coinc_def=None)
    if len(source) != 1:
        raise ValueError(
            f'expected one coincidence in coinc.xml, found {len(source)}')
    event, = source.values()
    return event


def skymap_to_fits_bytes(skymap):
    """Serialise a multi-order sky map table to FITS bytes."""
    from ligo.skymap.io import fits

    with tempfile.TemporaryDirectory() as tmpdir:
        filename = os.path.join(tmpdir, SKYMAP_FILENAME)
        fits.write_sky_map(filename, skymap, moc=True)
        with open(filename, 'rb') as f:
            return f.read()


@app.task(queue='openmp', shared=False, acks_late=True,
          reject_on_worker_lost=True)
def localize(coinc_bytes, psd_bytes, graceid, disabled_detectors=()):
    """Compute a 3-D multi-order sky map with BAYESTAR.

    Parameters
    ----------
    coinc_bytes : bytes
        The event's ``coinc.xml``.
    psd_bytes : bytes or None
        The event's ``psd.xml.gz``; ``None`` if ``coinc.xml`` carries the
        PSDs (:func:`read_event`).
    graceid : str
        The event's GraceDB id, written to the FITS ``OBJECT`` header.
    disabled_detectors : sequence of str
        Detectors to leave out of the localisation (e.g. ``['V1']``).

    Returns
    -------
    bytes
        The sky map in multi-order FITS format
        (``bayestar.multiorder.fits``). The header keeps BAYESTAR's own
        ``RUNTIME`` (seconds of computation).

    Raises :class:`ValueError` or :class:`ArithmeticError` when BAYESTAR
    cannot localise the event (e.g. no usable detector).
    """
    return localize_event(read_event(coinc_bytes, psd_bytes), graceid,
                          disabled_detectors)


def localize_event(event, graceid, disabled_detectors=()):
    """:func:`localize` a coincidence already read by :func:`read_event`;
    return the FITS bytes."""
    from ligo.skymap import omp
    from ligo.skymap.bayestar import localize as bayestar_localize
    from ligo.skymap.io.events import detector_disabled

    if disabled_detectors:
        source = detector_disabled.open({graceid: event},
                                        list(disabled_detectors))
        event = source[graceid]

    omp.num_threads = _omp_threads()
    log.info('%s: BAYESTAR with %d OpenMP threads, f_low=%g Hz, %s',
             graceid, omp.num_threads, app.conf.bayestar_f_low,
             app.conf.bayestar_waveform)
    skymap = bayestar_localize(
        event,
        waveform=app.conf.bayestar_waveform,
        f_low=app.conf.bayestar_f_low,
        enable_snr_series=app.conf.bayestar_enable_snr_series)
    skymap.meta['objid'] = str(graceid)
    log.info('%s: BAYESTAR finished in %.1f s', graceid,
             skymap.meta['runtime'])
    return skymap_to_fits_bytes(skymap)
