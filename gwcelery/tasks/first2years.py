"""Mock events: simulated CBC candidates uploaded as the searches would.

Beat runs :func:`upload_event` every :obj:`~gwcelery.conf.mock_events_interval`
seconds. Each run picks one of the simulated signals shipped in
``gwcelery/data/first2years`` (BNS, NSBH and BBH signals made with
ligo.skymap's ``bayestar-inject`` and ``bayestar-realize-coincs``; see
``tools/make_mock_events.py``), moves it to the current time, and uploads
one candidate per pipeline a fraction of a second to a second apart, each a
``coinc.xml`` followed by its ``psd.xml.gz``, like the online searches do.
"""

import gzip
import io
import random
from importlib import resources

from astropy.time import Time
from celery import group
from igwn_ligolw import lsctables, utils
from igwn_ligolw.ligolw import LIGOLWContentHandler
from lal import LIGOTimeGPS

from .. import app
from . import gracedb

#: Pipelines that have a realisation of each signal, in file names.
PIPELINES = ('gstlal', 'pycbc', 'MBTA')

#: Number of simulated signals shipped.
NUM_SIGNALS = 6


def _data(name):
    path = resources.files('gwcelery') / 'data' / 'first2years' / name
    return gzip.decompress(path.read_bytes())


def load_candidate(number, pipeline):
    """Return the ``coinc.xml`` of signal `number` as seen by `pipeline`."""
    return _data(f'{number}-{pipeline}.xml.gz')


def load_psd():
    """Return the ``psd.xml.gz`` contents (gzip-compressed) of the
    simulated detectors."""
    path = resources.files('gwcelery') / 'data' / 'first2years' / 'psd.xml.gz'
    return path.read_bytes()


def coinc_time(coinc):
    """Return the GPS time of the coincidence in a ``coinc.xml``."""
    doc = utils.load_fileobj(io.BytesIO(coinc),
                             contenthandler=LIGOLWContentHandler)
    row, = lsctables.CoincInspiralTable.get_table(doc)
    return float(row.end)


def shift_coinc(coinc, offset):
    """Move every time in a ``coinc.xml`` by `offset` seconds."""
    doc = utils.load_fileobj(io.BytesIO(coinc),
                             contenthandler=LIGOLWContentHandler)
    offset = LIGOTimeGPS(offset)
    for row in lsctables.CoincInspiralTable.get_table(doc):
        row.end = row.end + offset
    for row in lsctables.SnglInspiralTable.get_table(doc):
        row.end = row.end + offset
    out = io.BytesIO()
    utils.write_fileobj(doc, out)
    return out.getvalue()


def now_gps():
    """Return the current GPS time."""
    return Time.now().gps


@app.task(shared=False, ignore_result=True)
def upload_candidate(coinc, pipeline, search):
    """Upload one pipeline's candidate and then its PSD, as gstlal does."""
    event = gracedb.create_event(coinc, search, pipeline, 'CBC',
                                 filename='coinc.xml')
    gracedb.upload(load_psd(), 'psd.xml.gz', event['graceid'],
                   'Noise PSD of the simulated candidate', ['psd'])
    return event['graceid']


def plan_uploads(number, gpstime, rng):
    """Return (pipeline, coinc, delay) for the uploads of one signal.

    All of a signal's candidates move by the same offset, so the small
    differences in their times from the noise realisations remain. Two or
    three pipelines report it, each after a reporting delay of 0.1 to 2 s.
    """
    pipelines = rng.sample(PIPELINES, rng.randint(2, len(PIPELINES)))
    reference = coinc_time(load_candidate(number, pipelines[0]))
    offset = gpstime - reference
    return [(pipeline, shift_coinc(load_candidate(number, pipeline), offset),
             round(rng.uniform(0.1, 2.0), 3))
            for pipeline in pipelines]


@app.task(shared=False, ignore_result=True)
def upload_event(number=None, gpstime=None, search='MDC'):
    """Upload a simulated multi-pipeline CBC candidate.

    Parameters
    ----------
    number : int, optional
        Which shipped signal; random by default.
    gpstime : float, optional
        Time of the signal; one second ago by default.
    search : str
        GraceDB search of the uploads: ``MDC`` makes them mock data
        challenge events (graceids ``M...``, superevents ``MS...``).
    """
    rng = random.Random()
    if number is None:
        number = rng.randrange(NUM_SIGNALS)
    if gpstime is None:
        gpstime = now_gps() - 1.0
    group(upload_candidate.si(coinc, pipeline, search).set(countdown=delay)
          for pipeline, coinc, delay in plan_uploads(number, gpstime, rng)
          ).delay()
    return gpstime


@app.on_after_finalize.connect
def _schedule(sender, **kwargs):
    interval = sender.conf.mock_events_interval
    if interval:
        sender.add_periodic_task(interval, upload_event.s(),
                                 name='upload mock event')
