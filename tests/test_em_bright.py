"""Source classification: em_bright (HasNS, HasRemnant) and p_astro."""

import json

import numpy as np
import pytest

from gwcelery.tasks import em_bright, p_astro


def test_coinc_parameters(coinc_bytes):
    params = em_bright.coinc_parameters(coinc_bytes)
    assert params.mass1 == pytest.approx(1.355607)
    assert params.mass2 == pytest.approx(1.279483)
    assert params.snr == pytest.approx(15.6179, rel=1e-4)
    assert params.far == pytest.approx(5.176954877338635e-16)
    assert params.instruments == ['H1', 'L1', 'V1']
    assert params.gpstime == pytest.approx(1186436412.1738347)


def test_isco_radius_limits():
    assert em_bright.isco_radius(0.0) == pytest.approx(6.0)
    assert em_bright.isco_radius(-0.999) == pytest.approx(9.0, abs=0.01)
    assert em_bright.isco_radius(0.999) < 1.5
    spins = np.linspace(-0.9, 0.9, 19)
    assert np.all(np.diff(em_bright.isco_radius(spins)) < 0)


def test_remnant_mass_grows_with_spin_and_shrinks_with_bh_mass():
    masses = em_bright.remnant_mass(7.0, 1.4, np.array([0.0, 0.5, 0.9]),
                                    12.0)
    assert masses[0] == 0 and 0 < masses[1] < masses[2] < 1.4 * 1.2
    heavier = em_bright.remnant_mass(np.array([6.0, 12.0, 30.0]), 1.4, 0.9,
                                     12.0)
    assert np.all(np.diff(heavier) < 0)


@pytest.mark.parametrize('masses, spin, expected', [
    ((1.36, 1.28), 0.0, {'HasNS': 1, 'HasRemnant': 1, 'HasMassGap': 0}),
    ((30.0, 25.0), 0.0, {'HasNS': 0, 'HasRemnant': 0, 'HasMassGap': 0}),
    ((8.0, 1.4), 0.0, {'HasNS': 1, 'HasRemnant': 0, 'HasMassGap': 0}),
    ((8.0, 1.4), 0.9, {'HasNS': 1, 'HasRemnant': 1, 'HasMassGap': 0}),
])
def test_classify_clear_cases(masses, spin, expected):
    result = em_bright.classify(*masses, spin)
    assert result == pytest.approx(expected, abs=0.01)


def test_classify_borderline_is_uncertain_and_reproducible():
    """Near the neutron-star mass limit the answer is a probability, the
    same every time."""
    first = em_bright.classify(10.0, 2.9, 0.0)
    assert 0.1 < first['HasNS'] < 0.9
    assert em_bright.classify(10.0, 2.9, 0.0) == first


def test_source_properties_task(coinc_bytes):
    result = json.loads(em_bright.source_properties(coinc_bytes))
    assert result == {'HasNS': 1.0, 'HasRemnant': 1.0, 'HasMassGap': 0.0}


def test_p_astro_bns_is_astrophysical(coinc_bytes):
    event = {'graceid': 'G298048', 'pipeline': 'gstlal', 'far': 5.2e-16}
    result = json.loads(p_astro.compute_p_astro(coinc_bytes, event))
    assert set(result) == {'BNS', 'NSBH', 'BBH', 'Terrestrial'}
    assert sum(result.values()) == pytest.approx(1)
    assert result['BNS'] > 0.99
    assert result['NSBH'] == result['BBH'] == 0


def test_p_astro_high_far_is_terrestrial():
    result = p_astro.compute(1e-5, 8.5, 1.4, 1.3, 'gstlal', ['H1', 'L1'])
    assert result['Terrestrial'] > 0.99


def test_p_astro_classes_follow_masses():
    bbh = p_astro.compute(1e-12, 12.0, 30.0, 25.0, 'pycbc', ['H1', 'L1'])
    assert bbh['BBH'] > 0.5 and bbh['BNS'] == bbh['NSBH'] == 0
    nsbh = p_astro.compute(1e-12, 12.0, 8.0, 1.4, 'mbta', ['H1', 'L1'])
    assert nsbh['NSBH'] > 0.5 and nsbh['BNS'] == nsbh['BBH'] == 0


def test_p_astro_lower_far_is_more_astrophysical():
    terrestrial = [p_astro.compute(far, 10.0, 1.4, 1.3, 'spiir',
                                   ['H1', 'L1'])['Terrestrial']
                   for far in (1e-6, 1e-8, 1e-10)]
    assert terrestrial[0] > terrestrial[1] > terrestrial[2]


def test_p_astro_caps_snr_for_known_pipelines():
    far = 1e-12  # below pycbc's H1,L1 FAR threshold: SNR capped at 10
    assert p_astro.capped_snr(far, 30.0, 'pycbc', ['L1', 'H1']) == 10
    assert p_astro.capped_snr(far, 30.0, 'gstlal', ['H1', 'L1']) == 30.0
    assert p_astro.capped_snr(far, 30.0, 'pycbc', ['H1', 'K1']) == 30.0


def test_p_astro_rejects_zero_far():
    with pytest.raises(ValueError, match='FAR'):
        p_astro.compute(0.0, 10.0, 1.4, 1.3, 'gstlal', ['H1', 'L1'])


def test_p_astro_filename():
    assert p_astro.filename('MBTAOnline') == 'mbtaonline.p_astro.json'
