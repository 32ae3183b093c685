"""Draft GCN Circulars from the template."""

import json

import pytest

from gwcelery.tasks import circulars

SUPEREVENT = {
    'superevent_id': 'S170817a',
    'preferred_event_data': {
        'graceid': 'G298048', 'group': 'CBC', 'pipeline': 'gstlal',
        'gpstime': 1187008882.4457, 'far': 3.17e-12,
        'instruments': 'H1,L1,V1'},
}


def test_probability_and_interval_formats():
    assert circulars.format_probability(0.999) == '>99%'
    assert circulars.format_probability(0.004) == '<1%'
    assert circulars.format_probability(0.42) == '42%'
    assert circulars.format_interval(1 / (2 * 365.25 * 86400)) == '2 years'
    assert circulars.format_interval(1 / 86400) == '1 day'
    assert circulars.join_words(['a', 'b', 'c']) == 'a, b, and c'


def test_cbc_circular_with_everything(bayestar_skymap):
    text = circulars.create_circular(
        bayestar_skymap, SUPEREVENT, 'bayestar.multiorder.fits,0',
        json.dumps({'BNS': 0.97, 'NSBH': 0.0, 'BBH': 0.0,
                    'Terrestrial': 0.03}),
        json.dumps({'HasNS': 1.0, 'HasRemnant': 0.995}))
    assert 'LIGO/Virgo/KAGRA S170817a: Identification of a GW compact ' \
        'binary merger candidate' in text
    assert ('LIGO Hanford Observatory (H1), LIGO Livingston Observatory '
            '(L1), and Virgo Observatory (V1) at 2017-08-17 12:41:04.445 '
            'UTC') in text
    assert 'found by the GstLAL analysis pipeline' in text
    assert 'about one in 1e+04 years' in text
    assert ('is BNS (97%), Terrestrial (3%), NSBH (<1%), and BBH (<1%)'
            in text)
    assert '(HasNS) is >99%' in text and '(HasRemnant) is >99%' in text
    assert 'the 90% credible region is' in text
    assert 'a posteriori luminosity distance estimate is' in text
    assert '/superevents/S170817a/view/' in text


def test_burst_circular_without_skymap():
    superevent = json.loads(json.dumps(SUPEREVENT))
    superevent['preferred_event_data'].update(group='Burst', pipeline='CWB')
    text = circulars.create_circular(None, superevent)
    assert 'GW burst candidate' in text and 'cWB analysis' in text
    assert 'No sky map is available at this time' in text
    assert 'classification' not in text and 'HasNS' not in text


@pytest.mark.parametrize('group, pipeline, burst', [
    ('CBC', 'gstlal', False), ('Burst', 'CWB', True),
    ('Test', 'cwb', True), ('Test', 'pycbc', False)])
def test_is_burst(group, pipeline, burst):
    assert circulars.is_burst({'group': group, 'pipeline': pipeline}) is burst
