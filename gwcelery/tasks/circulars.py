"""Draft GCN Circulars, written from the templates
``gwcelery/templates/circular.txt`` (EarlyWarning, Preliminary, Initial,
Update; in the words of the LVK's circulars) and
``retraction-circular.txt``."""

import json

from .. import app
from ..templates import render
from ..voevent import gps_to_iso
from . import skymaps

#: Names of the observatories, by detector.
OBSERVATORIES = {
    'H1': 'LIGO Hanford Observatory (H1)',
    'L1': 'LIGO Livingston Observatory (L1)',
    'V1': 'Virgo Observatory (V1)',
    'K1': 'KAGRA Observatory (K1)',
    'G1': 'GEO 600 (G1)',
}

#: How the searches are named in circulars, by lowercase pipeline name.
PIPELINE_NAMES = {'gstlal': 'GstLAL', 'pycbc': 'PyCBC Live', 'mbta': 'MBTA',
                  'mbtaonline': 'MBTA', 'spiir': 'SPIIR', 'cwb': 'cWB',
                  'olib': 'oLIB'}


def format_probability(p):
    """A probability as circulars quote it: ``>99%``, ``<1%`` or ``42%``."""
    if p > 0.99:
        return '>99%'
    if p < 0.01:
        return '<1%'
    return f'{100 * p:.0f}%'


def format_interval(far):
    """``1/far`` in the largest sensible unit, e.g. ``2 years``."""
    seconds = 1 / far
    for unit, length in (('year', 365.25 * 86400), ('month', 30 * 86400),
                         ('day', 86400), ('hour', 3600), ('minute', 60)):
        if seconds >= length:
            value = seconds / length
            text = f'{value:.3g}' if value < 1e6 else f'{value:.1e}'
            return f'{text} {unit}s' if text != '1' else f'1 {unit}'
    return f'{seconds:.2g} seconds'


def join_words(words):
    """``a``, ``a and b``, ``a, b, and c``."""
    words = list(words)
    if len(words) < 3:
        return ' and '.join(words)
    return ', '.join(words[:-1]) + ', and ' + words[-1]


def is_burst(event):
    """Whether an event comes from a burst search (the Test group keeps
    the pipeline's name)."""
    return (event['group'] == 'Burst'
            or event['pipeline'].lower() in ('cwb', 'olib', 'mly'))


#: Template of the circular draft of each alert type.
TEMPLATES = {'EarlyWarning': 'circular.txt', 'Preliminary': 'circular.txt',
             'Initial': 'circular.txt', 'Update': 'circular.txt',
             'Retraction': 'retraction-circular.txt'}


def compose(superevent, skymap=None, p_astro=None, em_bright=None,
            alert_type='Preliminary'):
    """Return the text of a draft circular for a superevent's
    ``alert_type`` notice (a key of :data:`TEMPLATES`).

    ``skymap`` is ``None`` or a dict with ``filename`` and the
    :func:`gwcelery.tasks.skymaps.summary` numbers; ``p_astro`` and
    ``em_bright`` are ``None`` or the dicts of the classification files.
    """
    event = superevent['preferred_event_data']
    instruments = [ifo for ifo in (event.get('instruments') or '').split(',')
                   if ifo]
    context = {
        'alert_type': alert_type,
        'superevent_id': superevent['superevent_id'],
        'candidate_kind': ('burst' if is_burst(event)
                           else 'compact binary merger'),
        'observatories': join_words(OBSERVATORIES.get(ifo, ifo)
                                    for ifo in instruments),
        # to the millisecond, as circulars quote it
        'utc_time': gps_to_iso(event['gpstime'])[:-4].replace('T', ' '),
        'gpstime': event['gpstime'],
        'pipeline_name': PIPELINE_NAMES.get(event['pipeline'].lower(),
                                            event['pipeline']),
        'far': event['far'],
        'far_interval': format_interval(event['far']),
        'event_page': superevent_page(superevent['superevent_id']),
        'classification': None,
        'has_ns': None,
        'has_remnant': None,
        'skymap': skymap,
    }
    if p_astro:
        ranked = sorted(p_astro.items(), key=lambda item: -item[1])
        context['classification'] = join_words(
            f'{name} ({format_probability(p)})' for name, p in ranked)
    if em_bright:
        context['has_ns'] = format_probability(em_bright['HasNS'])
        context['has_remnant'] = format_probability(em_bright['HasRemnant'])
    return render(TEMPLATES[alert_type], **context)


def superevent_page(superevent_id):
    """Web page of a superevent on the configured GraceDB server."""
    root = app.conf.gracedb_url.rstrip('/')
    if root.endswith('/api'):
        root = root[:-len('/api')]
    return f'{root}/superevents/{superevent_id}/view/'


@app.task(shared=False)
def create_circular(skymap_fits, superevent, skymap_filename=None,
                    p_astro_json=None, em_bright_json=None,
                    alert_type='Preliminary'):
    """Return a draft circular (text) for a superevent, from its sky map
    (FITS bytes, or ``None`` if there is none; first, so that it can come
    from a download earlier in a chain) named ``skymap_filename``, and its
    classification files (JSON text, or ``None``), for its
    ``alert_type`` notice."""
    skymap = None
    if skymap_fits is not None:
        skymap = dict(skymaps.summary(skymap_fits), filename=skymap_filename)
    return compose(
        superevent, skymap,
        json.loads(p_astro_json) if p_astro_json else None,
        json.loads(em_bright_json) if em_bright_json else None,
        alert_type)
