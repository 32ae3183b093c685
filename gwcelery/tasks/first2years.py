"""Mock events: simulated CBC candidates uploaded as the searches would.

Beat runs :func:`upload_event` every :obj:`~gwcelery.conf.mock_events_interval`
seconds. Each run picks one of the simulated signals shipped in
``gwcelery/data/first2years`` (BNS, NSBH and BBH signals made with
ligo.skymap's ``bayestar-inject`` and ``bayestar-realize-coincs``; see
``tools/make_mock_events.py``), moves it to the current time, and uploads
one candidate per pipeline a fraction of a second to a second apart, like
the online searches do, in each search's style (:data:`UPLOAD_STYLES`): a
``coinc.xml`` with the PSDs inside (O4) or followed by its ``psd.xml.gz``
(O3), and for some searches their own ``{pipeline}.p_astro.json``.

:func:`inject_grb` plays NASA's GCN for the local deployment: it queues a
Fermi GBM notice of a simulated GRB for the mock GCN server (``gwcelery
mock-gcn-server``), which sends it to :func:`gwcelery.tasks.gcn.listen`.
Beat runs it every :obj:`~gwcelery.conf.mock_grb_interval` seconds, and
:func:`upload_event` also uploads a GRB coincident with its signal (an
MDC External event, :func:`upload_mdc_grb`) with probability
:obj:`~gwcelery.conf.mock_grb_coincidence_probability`.

A fraction :obj:`~gwcelery.conf.mock_events_bad_data_fraction` of the mock
events ask the mock frame writer (:mod:`gwcelery.tasks.detchar`) for a
bad-state or injection segment at their time, so that the local
deployment shows ``DQV`` and ``INJ`` as well as ``DQOK``.

:func:`schedule_mock_signoff` plays the rapid-response team for mock
superevents: an OK or NO sign-off a while after each sign-off request.
"""

import gzip
import io
import math
import random
from importlib import resources

import lxml.etree
from astropy.time import Time
from celery import group
from igwn_ligolw import lsctables, utils
from igwn_ligolw.ligolw import LIGOLWContentHandler
from lal import LIGOTimeGPS

from .. import app
from ..util.voevent_broker import VOEventQueue
from . import bayestar, detchar, gracedb, lvalert, p_astro

#: Pipelines that have a realisation of each signal, in file names.
PIPELINES = ('gstlal', 'pycbc', 'MBTA')

#: Number of simulated signals shipped.
NUM_SIGNALS = 6

#: Seconds after a mock event's time that its bad-data segment (if any)
#: lasts: past the end of the checked window of its superevent (t_0 + 3 s
#: for CBC), and short of the next mock event's window.
BAD_DATA_SECONDS = 4.0


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


def embed_psds(coinc, psd, reference_psd=None):
    """Return ``coinc`` (a ``coinc.xml``) with the PSDs of ``psd`` (a
    ``psd.xml.gz``) inside it, as the O4 searches upload it.

    Written with the LIGO-LW tools: the PSDs are read with
    :func:`lal.series.read_psd_xmldoc` (ligo.skymap's reader) and added
    with :func:`lal.series.make_psd_xmldoc`. ``reference_psd``, if given,
    replaces the ``--reference-psd`` process parameters: a stand-alone
    file can name itself there, so that ligo.skymap's command-line tools
    (which look for PSDs only there) read the PSDs inside it.
    """
    import lal.series

    doc = bayestar.read_ligolw(coinc)
    psds = lal.series.read_psd_xmldoc(bayestar.read_ligolw(psd),
                                      root_name=None)
    lal.series.make_psd_xmldoc(psds, doc.childNodes[0])
    if reference_psd is not None:
        for row in lsctables.ProcessParamsTable.get_table(doc):
            if row.param == '--reference-psd':
                row.value = reference_psd
    out = io.BytesIO()
    utils.write_fileobj(doc, out)
    return out.getvalue()


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


#: GPS time of Fermi's mission elapsed time (MET) 0, 2001-01-01 UTC.
FERMI_MET_EPOCH_GPS = 662342413

#: Truncated Julian Day = Modified Julian Day - this.
TJD_OFFSET = 40000


def mock_grb_notice(gpstime, ra, dec, error_radius):
    """Return a Fermi GBM final-position notice of a GRB at `gpstime`.

    Made from a real notice: the trigger number (Fermi's mission elapsed
    time, as GBM numbers its triggers), times, IVORN and position change.
    """
    path = (resources.files('gwcelery') / 'data' / 'mock_gcn' /
            'fermi_gbm_fin_pos.xml')
    root = lxml.etree.fromstring(path.read_bytes())
    time = Time(gpstime, format='gps', scale='utc')
    isot = time.isot
    trigger_id = str(int(gpstime - FERMI_MET_EPOCH_GPS))
    mjd = time.mjd
    params = {'TrigID': trigger_id,
              'Burst_TJD': str(int(mjd) - TJD_OFFSET),
              'Burst_SOD': f'{(mjd % 1) * 86400:.2f}'}
    for name, value in params.items():
        root.find(f"./What/Param[@name='{name}']").set('value', value)
    root.set('ivorn', f'ivo://nasa.gsfc.gcn/Fermi#GBM_Fin_Pos{isot[:22]}_'
                      f'{trigger_id}_0-000')
    where = root.find('./WhereWhen/ObsDataLocation/ObservationLocation/'
                      'AstroCoords')
    where.find('./Time/TimeInstant/ISOTime').text = isot[:22] + 'Z'
    where.find('./Position2D/Value2/C1').text = f'{ra:.4f}'
    where.find('./Position2D/Value2/C2').text = f'{dec:.4f}'
    where.find('./Position2D/Error2Radius').text = f'{error_radius:.4f}'
    return lxml.etree.tostring(root, xml_declaration=True, encoding='UTF-8')


def random_grb_notice(gpstime, rng):
    """A mock GRB notice at a random position, error radius 3 to 10 deg."""
    return mock_grb_notice(
        gpstime, ra=rng.uniform(0, 360),
        dec=math.degrees(math.asin(rng.uniform(-1, 1))),
        error_radius=rng.uniform(3, 10))


@app.task(shared=False, ignore_result=True)
def inject_grb(gpstime=None):
    """Queue a simulated Fermi GBM GRB notice for the mock GCN server.

    The GRB is at `gpstime` (now by default). It becomes a Production
    External event, as a real GRB would.
    """
    if gpstime is None:
        gpstime = now_gps()
    notice = random_grb_notice(gpstime, random.Random())
    queue = VOEventQueue(app.conf, key=app.conf.mock_gcn_queue_key)
    try:
        queue.append(notice)
    finally:
        queue.close()


@gracedb.task(shared=False, ignore_result=True)
def upload_mdc_grb(gpstime):
    """Upload a simulated GRB as an MDC External event (search MDC).

    RAVEN pairs MDC superevents only with MDC external events, as in the
    reference pipeline, so a GRB meant to coincide with a mock event is
    uploaded this way rather than sent through the mock GCN server.
    """
    notice = random_grb_notice(gpstime, random.Random())
    return gracedb.create_event(notice, 'MDC', 'Fermi', 'External',
                                filename='fermi_gbm_notice.xml')['graceid']


#: How each mock search uploads its candidates, as the O4 searches differ:
#: the PSDs inside ``coinc.xml`` (O4) or in a separate ``psd.xml.gz`` (O3
#: style), and the search's own ``{pipeline}.p_astro.json`` or none.
UPLOAD_STYLES = {
    'gstlal': {'psds_in_coinc': True, 'own_p_astro': True},
    'MBTA': {'psds_in_coinc': True, 'own_p_astro': False},
    'pycbc': {'psds_in_coinc': False, 'own_p_astro': True},
}


@gracedb.task(shared=False, ignore_result=True)
def upload_candidate(coinc, pipeline, search):
    """Upload one pipeline's candidate as that search does
    (:data:`UPLOAD_STYLES`): ``coinc.xml`` (with the PSDs inside, or
    followed by ``psd.xml.gz``), then its own classification if it makes
    one (here with :func:`gwcelery.tasks.p_astro.compute_p_astro`)."""
    gpstime = coinc_time(coinc)
    style = UPLOAD_STYLES[pipeline]
    if style['psds_in_coinc']:
        coinc = embed_psds(coinc, load_psd())
    event = gracedb.create_event(
        coinc, search, pipeline, 'CBC', filename='coinc.xml',
        lookup=f'pipeline: {pipeline} {gpstime - 0.01} .. {gpstime + 0.01}')
    graceid = event['graceid']
    if style['own_p_astro']:
        gracedb.upload(p_astro.compute_p_astro(coinc, event),
                       p_astro.filename(pipeline), graceid,
                       f'Source classification by {pipeline}', ['p_astro'])
    if not style['psds_in_coinc']:
        gracedb.upload(load_psd(), 'psd.xml.gz', graceid,
                       'Noise PSD of the simulated candidate', ['psd'])
    return graceid


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
    if search == 'MDC' and \
            rng.random() < app.conf.mock_grb_coincidence_probability:
        # Like GRB 170817A, 1.7 s after GW170817; uploaded before the
        # candidates, so that the new superevent's RAVEN search finds it.
        upload_mdc_grb.delay(gpstime + rng.uniform(0.5, 2.0))
    bad_data = detchar.mock_event_bad_data() if search == 'MDC' else None
    if bad_data:
        # The frames up to now are written already; the rest of the
        # checked window (seconds after the signal) is not, and one bad
        # sample in the window is enough.
        detchar.request_bad_segment(bad_data, gpstime,
                                    gpstime + BAD_DATA_SECONDS)
    group(upload_candidate.si(coinc, pipeline, search).set(countdown=delay)
          for pipeline, coinc, delay in plan_uploads(number, gpstime, rng)
          ).delay()
    return gpstime


def mock_signoff_status(superevent_id):
    """The simulated decision on a superevent, ``'OK'`` or ``'NO'`` (a
    fraction :obj:`~gwcelery.conf.mock_signoff_no_fraction`); always the
    same for the same superevent, so that a repeated alert never signs
    off differently."""
    draw = random.Random(superevent_id).random()
    return 'NO' if draw < app.conf.mock_signoff_no_fraction else 'OK'


def is_advocate_request(alert):
    """Whether a ``label_added`` alert is
    :obj:`~gwcelery.conf.advocate_request_label`."""
    return alert['data'].get('name') == app.conf.advocate_request_label


@lvalert.handler('mdc_superevent', alert_types=('label_added',),
                 when=is_advocate_request, shared=False, ignore_result=True)
def schedule_mock_signoff(alert):
    """Simulate the rapid-response team: an ``ADV`` signoff
    (:func:`mock_signoff_status`) :obj:`~gwcelery.conf.mock_signoff_delay`
    seconds after an MDC superevent's ADVREQ, where mock events are
    uploaded."""
    conf = app.conf
    if not conf.mock_events_interval or conf.mock_signoff_delay is None:
        return
    superevent_id = alert['object']['superevent_id']
    gracedb.create_signoff.apply_async(
        (superevent_id, 'ADV', mock_signoff_status(superevent_id),
         'Simulated rapid-response decision (gwcelery local)'),
        countdown=conf.mock_signoff_delay)


@app.on_after_finalize.connect
def _schedule(sender, **kwargs):
    interval = sender.conf.mock_events_interval
    if interval:
        sender.add_periodic_task(interval, upload_event.s(),
                                 name='upload mock event')
    interval = sender.conf.mock_grb_interval
    if interval:
        sender.add_periodic_task(interval, inject_grb.s(),
                                 name='inject mock GRB')
