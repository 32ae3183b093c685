"""Source properties of a CBC candidate: does it contain a neutron star
(HasNS), does the merger leave matter outside the final object
(HasRemnant), does a component fall in the 3--5 solar-mass gap
(HasMassGap)?

A search that computes its own source properties uploads them as
``{pipeline}.em_bright.json``, and the orchestrator uses that file
(:mod:`gwcelery.tasks.orchestrator_uploads`); this module computes them
for the others.

The LVK's own package (``ligo-em-bright``, version 1.2.2 inspected) cannot
run here. Importing ``ligo.em_bright.em_bright`` makes
``ligo.em_bright.data`` download 30 files from git.ligo.org (astropy's
``download_file``): the trained classifiers of 23 equations of state, the
mass-gap and search-specific classifiers, and the equation-of-state
tables and posterior draws; none is in the wheel, and this machine has no
network but the package registries. The classifiers are pickled
scikit-learn objects, bound to the pinned ``scikit-learn==1.5.1``, and the
package pins ``astropy<7`` (this project runs astropy 8). This module
implements a small, documented model instead, from the search's template:

1. **Mass uncertainty.** A matched-filter template measures the chirp
   mass :math:`\\mathcal{M}` well and the symmetric mass ratio
   :math:`\\eta` poorly. We draw :obj:`~gwcelery.conf.em_bright_samples`
   samples with :math:`\\mathcal{M}` normal about the template value
   (fractional width :obj:`~gwcelery.conf.em_bright_mchirp_fractional_error`)
   and :math:`\\eta` normal about the template value (width
   :obj:`~gwcelery.conf.em_bright_eta_error`, folded into
   :math:`(0, 1/4]`), and convert each back to component masses
   :math:`m_1 \\ge m_2`. The aligned spin of the primary is the
   template's.
2. **HasNS** is the fraction of samples with
   :math:`m_2 \\le` :obj:`~gwcelery.conf.em_bright_ns_max_mass`.
3. **HasRemnant**: a binary of two neutron stars always leaves matter
   behind. For a black hole--neutron star binary the remnant baryon mass
   outside the black hole is Foucart, Hinderer & Nissanke (2018, PRD 98,
   081501, eq. 4):

   .. math::

       \\frac{M_\\mathrm{rem}}{M^b_\\mathrm{NS}} = \\left[\\max\\left(
       \\alpha\\frac{1 - 2C}{\\eta^{1/3}}
       - \\beta \\hat R_\\mathrm{ISCO} \\frac{C}{\\eta} + \\gamma,
       0\\right)\\right]^\\delta

   with :math:`\\alpha = 0.406`, :math:`\\beta = 0.139`,
   :math:`\\gamma = 0.255`, :math:`\\delta = 1.761`; the neutron star's
   compactness :math:`C = G m_2 / (R c^2)` for the radius
   :obj:`~gwcelery.conf.em_bright_ns_radius`; its baryon mass
   :math:`M^b = m_2 (1 + 0.6 C / (1 - C/2))` (Lattimer & Prakash 2001);
   and :math:`\\hat R_\\mathrm{ISCO}` the prograde innermost stable
   circular orbit (Bardeen, Press & Teukolsky 1972) of a black hole of
   spin :math:`\\chi_1`, in units of its mass. HasRemnant is the fraction
   of samples with :math:`M_\\mathrm{rem} > 0`.
4. **HasMassGap** is the fraction of samples with a component between
   :obj:`~gwcelery.conf.em_bright_ns_max_mass` and
   :obj:`~gwcelery.conf.em_bright_mass_gap_max`.

The random draws use a fixed seed, so one input always gives one output.
"""

import io
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np

from .. import app

log = logging.getLogger(__name__)

#: Fit coefficients of Foucart, Hinderer & Nissanke (2018), eq. (4).
FOUCART_ALPHA, FOUCART_BETA, FOUCART_GAMMA, FOUCART_DELTA = (
    0.406, 0.139, 0.255, 1.761)

#: G M_sun / c^2 in kilometres.
SOLAR_MASS_KM = 1.4766250614046494

#: Seed of the mass-uncertainty draws (reproducible classifications).
RANDOM_SEED = 20170817


@dataclass
class CoincParameters:
    """What the classification needs from a CBC ``coinc.xml``."""

    mass1: float
    mass2: float
    spin1z: float
    spin2z: float
    snr: float
    far: float
    instruments: list
    gpstime: float


def coinc_parameters(coinc_bytes):
    """Read the template, network SNR, FAR and detectors of the one
    coincidence in a LIGO-LW ``coinc.xml`` (new or old ``ilwd:char``
    format)."""
    from igwn_ligolw import lsctables
    from igwn_ligolw.utils import load_fileobj
    from ligo.skymap.io.events.ligolw import ContentHandler

    doc = load_fileobj(io.BytesIO(coinc_bytes), contenthandler=ContentHandler)
    coincs = lsctables.CoincInspiralTable.get_table(doc)
    if len(coincs) != 1:
        raise ValueError(
            f'expected one coinc_inspiral row, found {len(coincs)}')
    coinc, = coincs
    singles = lsctables.SnglInspiralTable.get_table(doc)
    if not singles:
        raise ValueError('coinc.xml has no sngl_inspiral rows')
    template = singles[0]
    mass1, mass2 = sorted((template.mass1, template.mass2), reverse=True)
    spin1z, spin2z = ((template.spin1z, template.spin2z)
                      if template.mass1 >= template.mass2
                      else (template.spin2z, template.spin1z))
    snr = coinc.snr
    if snr is None:
        snr = float(np.sqrt(sum(single.snr ** 2 for single in singles)))
    instruments = sorted(coinc.ifos.split(',')) if coinc.ifos else sorted(
        {single.ifo for single in singles})
    return CoincParameters(
        mass1=float(mass1), mass2=float(mass2),
        spin1z=float(spin1z or 0.0), spin2z=float(spin2z or 0.0),
        snr=float(snr), far=float(coinc.combined_far),
        instruments=instruments, gpstime=float(coinc.end))


def isco_radius(chi):
    """Prograde ISCO radius of a Kerr black hole of dimensionless aligned
    spin ``chi`` (negative: retrograde), in units of its mass."""
    chi = np.clip(chi, -0.999, 0.999)
    z1 = 1 + np.cbrt(1 - chi ** 2) * (np.cbrt(1 + chi) + np.cbrt(1 - chi))
    z2 = np.sqrt(3 * chi ** 2 + z1 ** 2)
    return 3 + z2 - np.sign(chi) * np.sqrt((3 - z1) * (3 + z1 + 2 * z2))


def remnant_mass(mass1, mass2, chi1, ns_radius_km):
    """Baryon mass (solar masses) left outside the black hole of mass
    ``mass1`` and aligned spin ``chi1`` after it merges with a neutron star
    of mass ``mass2`` and radius ``ns_radius_km`` (Foucart et al. 2018)."""
    mass1, mass2 = np.asarray(mass1, float), np.asarray(mass2, float)
    eta = mass1 * mass2 / (mass1 + mass2) ** 2
    compactness = mass2 * SOLAR_MASS_KM / ns_radius_km
    baryon_mass = mass2 * (1 + 0.6 * compactness / (1 - 0.5 * compactness))
    fit = (FOUCART_ALPHA * (1 - 2 * compactness) / np.cbrt(eta)
           - FOUCART_BETA * isco_radius(chi1) * compactness / eta
           + FOUCART_GAMMA)
    return baryon_mass * np.maximum(fit, 0) ** FOUCART_DELTA


def sample_masses(mass1, mass2, rng, n):
    """Draw component masses (m1 >= m2) about a template, with the chirp
    mass narrowly and the symmetric mass ratio broadly distributed."""
    total = mass1 + mass2
    eta0 = mass1 * mass2 / total ** 2
    mchirp0 = total * eta0 ** 0.6
    mchirp = mchirp0 * (
        1 + app.conf.em_bright_mchirp_fractional_error
        * rng.standard_normal(n))
    mchirp = np.abs(mchirp)
    eta = eta0 + app.conf.em_bright_eta_error * rng.standard_normal(n)
    # Fold into (0, 1/4]: reflect at 1/4 (equal masses), bound away from 0.
    eta = np.where(eta > 0.25, 0.5 - eta, eta)
    eta = np.clip(eta, 0.01, 0.25)
    total = mchirp * eta ** -0.6
    root = np.sqrt(np.maximum(1 - 4 * eta, 0))
    return 0.5 * total * (1 + root), 0.5 * total * (1 - root)


def classify(mass1, mass2, spin1z):
    """Return ``{'HasNS', 'HasRemnant', 'HasMassGap'}`` probabilities for a
    template (masses in solar masses, aligned primary spin)."""
    conf = app.conf
    rng = np.random.default_rng(RANDOM_SEED)
    m1, m2 = sample_masses(mass1, mass2, rng, conf.em_bright_samples)
    ns_max = conf.em_bright_ns_max_mass
    has_ns = m2 <= ns_max
    binary_ns = m1 <= ns_max
    disrupted = remnant_mass(m1, m2, spin1z, conf.em_bright_ns_radius) > 0
    has_remnant = has_ns & (binary_ns | disrupted)
    in_gap = ((m1 > ns_max) & (m1 <= conf.em_bright_mass_gap_max)) | (
        (m2 > ns_max) & (m2 <= conf.em_bright_mass_gap_max))
    return {'HasNS': float(np.mean(has_ns)),
            'HasRemnant': float(np.mean(has_remnant)),
            'HasMassGap': float(np.mean(in_gap))}


@app.task(shared=False)
def source_properties(coinc_bytes):
    """Classify a CBC candidate from its ``coinc.xml``.

    Returns the JSON text of ``em_bright.json``:
    ``{"HasNS": p, "HasRemnant": p, "HasMassGap": p}``.
    """
    params = coinc_parameters(coinc_bytes)
    result = classify(params.mass1, params.mass2, params.spin1z)
    log.info('em_bright for template %s: %s', asdict(params), result)
    return json.dumps(result)
