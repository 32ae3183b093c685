"""The VOEvent document that the server writes when a VOEvent is created:
the record's fields in the LVK notice format of :mod:`gwcelery.voevent`.
"""

from .. import voevent
from .vocabulary import VOEVENT_FILE_TYPES

#: The record's probability fields, by the Param that each fills, for the
#: ``Classification`` and ``Properties`` groups.
CLASSIFICATION_FIELDS = {'BNS': 'prob_bns', 'NSBH': 'prob_nsbh',
                         'BBH': 'prob_bbh', 'Terrestrial': 'prob_terrestrial'}
PROPERTIES_FIELDS = {'HasNS': 'prob_has_ns', 'HasRemnant': 'prob_has_remnant',
                     'HasMassGap': 'prob_mass_gap'}


def _object_url(root, object_id, superevent):
    kind = 'superevents' if superevent else 'events'
    return f'{root}{kind}/{object_id}/'


def _probabilities(record, fields):
    return {name: record[field] for name, field in fields.items()
            if record.get(field) is not None}


def build_voevent(record, event, object_id, api_root, subject=None):
    """Return the XML bytes of the VOEvent ``record`` about ``object_id``.

    ``event`` is the (preferred) event dict; ``subject`` the superevent dict
    for superevent VOEvents. Test and MDC events make ``test`` notices.
    """
    test = event['group'] == 'Test' or event['search'] == 'MDC'
    web_root = api_root.rsplit('/api/', 1)[0] + '/'
    skymap_url = None
    if record.get('skymap_filename'):
        skymap_url = (f'{_object_url(api_root, object_id, subject)}files/'
                      f"{record['skymap_filename']}")
    return voevent.build(
        ivorn=record['ivorn'], superevent_id=object_id,
        alert_type=VOEVENT_FILE_TYPES[record['voevent_type']],
        serial_number=record['N'],
        gpstime=subject['t_0'] if subject else event['gpstime'],
        far=event['far'],
        instruments=[ifo for ifo in event['instruments'].split(',') if ifo],
        group=event['group'], pipeline=event['pipeline'],
        search=event['search'],
        event_page=f'{_object_url(web_root, object_id, subject)}view/',
        role='test' if test else 'observation',
        skymap_url=skymap_url, skymap_type=record.get('skymap_type'),
        classification=_probabilities(record, CLASSIFICATION_FIELDS),
        properties=_probabilities(record, PROPERTIES_FIELDS),
        internal=record['internal'], open_alert=record['open_alert'],
        hardware_injection=record['hardware_inj'])
