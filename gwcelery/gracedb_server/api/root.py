"""The API root: the discovery document the clients read first, and the
user info."""

from flask import Blueprint, g

from ..responses import json_response, versioned_root
from ..vocabulary import (
    EM_GROUPS,
    GROUPS,
    INSTRUMENTS,
    LABELS,
    PIPELINES,
    SEARCHES,
    SERVER_VERSION,
    SIGNOFF_STATUSES,
    SIGNOFF_TYPES,
    VOEVENT_TYPES,
)

blueprint = Blueprint('root', __name__)

#: Routes below a superevent advertised as ``superevent-{key}-template``.
SUPEREVENT_TEMPLATES = (
    ('event-list', 'events/'),
    ('event-detail', 'events/{graceid}/'),
    ('pipeline-preferred-event-list', 'pipeline_preferred_events/'),
    ('pipeline-preferred-event-detail',
     'pipeline_preferred_events/{graceid}/'),
    ('label-list', 'labels/'),
    ('label-detail', 'labels/{label_name}/'),
    ('log-list', 'logs/'),
    ('log-detail', 'logs/{N}/'),
    ('log-tag-list', 'logs/{N}/tags/'),
    ('log-tag-detail', 'logs/{N}/tags/{tag_name}/'),
    ('file-list', 'files/'),
    ('file-detail', 'files/{file_name}'),
    ('voevent-list', 'voevents/'),
    ('voevent-detail', 'voevents/{N}/'),
    ('emobservation-list', 'emobservations/'),
    ('emobservation-detail', 'emobservations/{N}/'),
    ('confirm-as-gw', 'confirm-as-gw/'),
    ('signoff-list', 'signoffs/'),
    ('signoff-detail', 'signoffs/{typeinst}/'),
    ('permission-list', 'permissions/'),
    ('permission-modify', 'permissions/modify/'))


def _templates(root):
    event = root + 'events/{graceid}'
    superevent = root + 'superevents/{superevent_id}/'
    templates = {
        'event-detail-template': event,
        'event-log-template': event + '/log/',
        'event-log-detail-template': event + '/log/{N}',
        'event-label-template': event + '/labels/{label}',
        'files-template': event + '/files/{filename}',
        'taglist-template': event + '/log/{N}/tag/',
        'tag-template': event + '/log/{N}/tag/{tag_name}',
        'voevent-list-template': event + '/voevent/',
        'voevent-detail-template': event + '/voevent/{N}',
        'emobservation-list-template': event + '/emobservation/',
        'emobservation-detail-template': event + '/emobservation/{N}',
        'embb-event-log-template': event + '/embb/',
        'signoff-list-template': event + '/signoff/',
        'update-grbevent-template': event + '/update-grbevent/',
        'superevent-detail-template': superevent,
    }
    for key, path in SUPEREVENT_TEMPLATES:
        templates[f'superevent-{key}-template'] = superevent + path
    return templates


@blueprint.route('', methods=['GET'])
def root():
    """The discovery document the clients read."""
    base = versioned_root()
    return json_response({
        'links': {
            'events': base + 'events/',
            'superevents': base + 'superevents/',
            'self': base,
            'user-info': base + 'user-info/',
        },
        'templates': _templates(base),
        'groups': list(GROUPS),
        'pipelines': list(PIPELINES),
        'searches': list(SEARCHES),
        'labels': list(LABELS),
        'superevent-categories': {'P': 'Production', 'T': 'Test',
                                  'M': 'MDC'},
        'voevent-types': VOEVENT_TYPES,
        'signoff-types': SIGNOFF_TYPES,
        'signoff-statuses': SIGNOFF_STATUSES,
        'instruments': INSTRUMENTS,
        'em-groups': list(EM_GROUPS),
        'wavebands': {},
        'eel-statuses': {'FO': 'FOOTPRINT', 'SO': 'SOURCE',
                         'CO': 'COMMENT', 'CI': 'CIRCULAR'},
        'obs-statuses': {'NA': 'NOT APPLICABLE', 'OB': 'OBSERVATION',
                         'TE': 'TEST', 'PR': 'PREDICTION'},
        'api-versions': ['v1', 'v2'],
        'API_VERSIONS': ['v1', 'v2'],
        'api-default': 'v1',
        'server-version': SERVER_VERSION,
    })


@blueprint.route('/user-info', methods=['GET'])
def user_info():
    """Who the server takes the client for."""
    return json_response({'username': g.user})
