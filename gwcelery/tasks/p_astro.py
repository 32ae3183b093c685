"""Probability that a CBC candidate is astrophysical, by source class:
BNS, NSBH, BBH and Terrestrial.

This uses the LVK's ``p-astro`` package (``ligo.p_astro``), which runs
offline: it ships its expected source counts and the FAR/SNR thresholds of
the searches. Its FAR-based model is the one the LVK applied to the
searches that publish no ranking-statistic histograms (MBTA, PyCBC, SPIIR)
in O3. O4 searches upload their own ``{pipeline}.p_astro.json`` with the
candidate, and the orchestrator uses it
(:mod:`gwcelery.tasks.orchestrator_uploads`); we apply this model to the
candidates of searches that did not, whatever the pipeline, since the
GstLAL ranking-statistic data cannot be had here.

The model, in brief (``ligo.p_astro.computation``): the foreground density
of a candidate of network SNR :math:`\\rho` is that of a uniform-in-volume
population above a threshold :math:`\\rho_*`, :math:`f = 3\\rho_*^3 /
\\rho^4`; the background density grows with the FAR as :math:`b =
\\mathrm{FAR} / \\mathrm{FAR}_*`. The Bayes factor :math:`f/b` is shared
among the source classes by hard cuts in template mass (both components
below 3 solar masses: BNS; one: NSBH; both above 5: BBH) and weighed
against the expected counts of each class and of terrestrial noise. For
pipelines with a calibrated high-SNR saturation the package's threshold
table caps the SNR.
"""

import json
import logging
from importlib import resources

from .. import app
from .em_bright import coinc_parameters

log = logging.getLogger(__name__)

_DATA = resources.files('ligo.p_astro.data')

#: Expected counts of each class in the package's reference analysis.
MEAN_COUNTS = json.loads(
    (_DATA / 'H1L1V1-mean_counts-1126051217-61603201.json').read_text())

#: SNR caps by pipeline and detector combination.
FAR_SNR_THRESHOLDS = json.loads(
    (_DATA / 'H1L1V1-pipeline-far_snr-thresholds.json').read_text())


def filename(pipeline):
    """Name of the p_astro file that ``pipeline`` gets: e.g.
    ``gstlal.p_astro.json``."""
    return f'{pipeline.lower()}.p_astro.json'


def capped_snr(far, snr, pipeline, instruments):
    """The SNR that enters the foreground density: capped for the
    pipelines and detector combinations that the package has thresholds
    for, the candidate's own otherwise."""
    from ligo.p_astro.computation import choose_snr

    pipeline = pipeline.lower()
    if ','.join(sorted(instruments)) not in FAR_SNR_THRESHOLDS.get(
            pipeline, {}):
        return snr
    return choose_snr(far, snr, pipeline, set(instruments),
                      FAR_SNR_THRESHOLDS)


def compute(far, snr, mass1, mass2, pipeline, instruments):
    """Return ``{'BNS', 'NSBH', 'BBH', 'Terrestrial'}`` probabilities."""
    from ligo.p_astro.computation import (
        evaluate_p_astro_from_bayesfac,
        get_f_over_b,
    )

    if far <= 0:
        raise ValueError(f'FAR must be positive, got {far!r}')
    snr = capped_snr(far, snr, pipeline, instruments)
    bayes_factor = get_f_over_b(far, snr, app.conf.p_astro_far_threshold,
                                app.conf.p_astro_snr_threshold)
    result = evaluate_p_astro_from_bayesfac(
        bayes_factor, MEAN_COUNTS, mass1, mass2)
    return {key: float(result[key])
            for key in ('BNS', 'NSBH', 'BBH', 'Terrestrial')}


@app.task(shared=False)
def compute_p_astro(coinc_bytes, event):
    """Classify a CBC candidate from its ``coinc.xml`` and GraceDB event
    dict (for the pipeline and the FAR the event was registered with).

    Returns the JSON text of ``{pipeline}.p_astro.json``.
    """
    params = coinc_parameters(coinc_bytes)
    far = event.get('far') or params.far
    result = compute(far, params.snr, params.mass1, params.mass2,
                     event['pipeline'], params.instruments)
    log.info('%s: p_astro %s', event.get('graceid'), result)
    return json.dumps(result)
