"""REST API views (registered under ``/api/``, ``/api/v1/``, ``/api/v2/``).

Routes, encodings and response shapes follow GraceDB as the clients
gracedb-sdk and ligo-gracedb use it.
"""

import mimetypes
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request

from . import __version__ as server_version
from .app import RequestFields, json_response
from .errors import ApiError, bad_request
from .vocabulary import (
    EM_GROUPS,
    GROUPS,
    INSTRUMENTS,
    LABELS,
    PIPELINES,
    SEARCHES,
    SIGNOFF_STATUSES,
    SIGNOFF_TYPES,
    VOEVENT_TYPES,
)

blueprint = Blueprint('api', __name__)

#: Default and largest page sizes of searches.
DEFAULT_COUNT = 10
MAX_COUNT = 1000


def store():
    return current_app.config['store']


def versioned_root():
    """The API root the request came in under (e.g. ``.../api/v2/``)."""
    prefix = request.blueprint.replace('api_', '')
    base = request.host_url + 'api/'
    return base if prefix == 'api' else f'{base}{prefix}/'


def upload(name):
    """``(filename, bytes)`` of an uploaded file part, or ``(None, None)``."""
    part = request.files.get(name)
    if part is None:
        return None, None
    return part.filename, part.read()


# --- root -----------------------------------------------------------------

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
    for key, path in (
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
            ('permission-modify', 'permissions/modify/')):
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
        'server-version': server_version,
    })


@blueprint.route('/user-info', methods=['GET'])
def user_info():
    return json_response({'username': g.user})


# --- searches -------------------------------------------------------------

def _page_arguments():
    try:
        start = max(0, int(request.args.get('start', 0)))
        count = int(request.args.get('count', DEFAULT_COUNT))
    except ValueError:
        raise bad_request('start and count must be integers') from None
    return start, min(max(count, 1), MAX_COUNT)


def _page_links(start, count, total, next_when_done):
    params = {key: value for key, value in request.args.items()
              if key not in ('start', 'count')}

    def url(offset):
        return request.base_url + '?' + urlencode(
            {**params, 'count': count, 'start': offset})

    last = max(0, (total - 1) // count * count)
    links = {'self': url(start), 'first': url(0), 'last': url(last)}
    if start + count < total:
        links['next'] = url(start + count)
    elif next_when_done:
        links['next'] = None
    return links


@blueprint.route('/events', methods=['GET'])
def events_search():
    start, count = _page_arguments()
    events, total = store().search_events(
        request.args.get('query', ''), request.args.get('sort', ''), start,
        count)
    columns = [c for c in request.args.get('columns', '').split(',') if c]
    if columns:
        events = [{key: event.get(key) for key in columns}
                  for event in events]
    return json_response({'start': start, 'numRows': total,
                          'events': events,
                          'links': _page_links(start, count, total, False)})


@blueprint.route('/superevents', methods=['GET'])
def superevents_search():
    start, count = _page_arguments()
    superevents, total = store().search_superevents(
        request.args.get('query', ''), request.args.get('sort', ''), start,
        count)
    links = _page_links(start, count, total, True)
    links['previous'] = None if start == 0 else (
        request.base_url + '?' + urlencode({
            **{k: v for k, v in request.args.items()
               if k not in ('start', 'count')},
            'count': count, 'start': max(0, start - count)}))
    return json_response({'start': start, 'numRows': total,
                          'superevents': superevents, 'links': links})


# --- events ---------------------------------------------------------------

@blueprint.route('/events', methods=['POST'])
def events_create():
    fields = RequestFields()
    filename, contents = upload('eventFile')
    event = store().create_event(
        group=fields.get('group'), pipeline=fields.get('pipeline'),
        search=fields.get('search'),
        offline=str(fields.get('offline', 'False')).lower() == 'true',
        labels=fields.getlist('labels'), filename=filename,
        contents=contents, submitter=g.user)
    event['warnings'] = []
    return json_response(event, 201,
                         {'Location': event['links']['self']})


@blueprint.route('/events/<graceid>', methods=['GET'])
def event_get(graceid):
    return json_response(store().get_event(graceid))


@blueprint.route('/events/<graceid>', methods=['PUT'])
def event_replace(graceid):
    filename, contents = upload('eventFile')
    store().replace_event(graceid, filename, contents, g.user)
    return Response(status=202)


@blueprint.route('/events/<graceid>/update-grbevent', methods=['PATCH'])
def event_update_grb(graceid):
    fields = RequestFields()
    values = {}
    for key in ('ra', 'dec', 'error_radius', 't90', 'redshift'):
        if fields.get(key) not in (None, ''):
            try:
                values['T90' if key == 't90' else key] = float(
                    fields.get(key))
            except (TypeError, ValueError):
                raise bad_request(f'{key}: A valid number is required.') \
                    from None
    if fields.get('designation'):
        values['designation'] = fields.get('designation')
    return json_response(store().update_grbevent(graceid, values, g.user))


# --- logs, tags, files, labels, VOEvents: events and superevents ----------

def _create_log(object_id):
    fields = RequestFields()
    filename, contents = upload('upload')
    entry = store().create_log(
        object_id, fields.get('comment') or '', g.user, filename, contents,
        tags=fields.getlist('tagname'),
        display_names=fields.getlist('displayName'),
        label=fields.get('label') or None)
    return json_response(entry, 201, {'Location': entry['self']})


def _log_list(object_id):
    entries = store().logs(object_id)
    return json_response({'start': 0, 'numRows': len(entries),
                          'log': entries, 'links': {'self': request.url}})


@blueprint.route('/events/<graceid>/log', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs', methods=['GET'])
def log_list(graceid):
    return _log_list(graceid)


@blueprint.route('/events/<graceid>/log', methods=['POST'])
@blueprint.route('/superevents/<graceid>/logs', methods=['POST'])
def log_create(graceid):
    return _create_log(graceid)


@blueprint.route('/events/<graceid>/log/<n>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs/<n>', methods=['GET'])
def log_get(graceid, n):
    return json_response(store().get_log(graceid, n))


@blueprint.route('/events/<graceid>/log/<n>/tag', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs/<n>/tags', methods=['GET'])
def tag_list(graceid, n):
    return json_response({'tags': store().tags(graceid, n)})


@blueprint.route('/events/<graceid>/log/<n>/tag/<tag>', methods=['PUT'])
def event_tag_add(graceid, n, tag):
    fields = RequestFields()
    store().add_tag(graceid, n, tag, fields.get('displayName'), g.user)
    return json_response('Tag created.', 201)


@blueprint.route('/superevents/<graceid>/logs/<n>/tags', methods=['POST'])
def superevent_tag_add(graceid, n):
    fields = RequestFields()
    tag = store().add_tag(graceid, n, fields.get('name'),
                          fields.get('displayName'), g.user)
    return json_response(tag, 201)


@blueprint.route('/events/<graceid>/log/<n>/tag/<tag>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs/<n>/tags/<tag>',
                 methods=['GET'])
def tag_get(graceid, n, tag):
    for item in store().tags(graceid, n):
        if item['name'] == tag:
            return json_response(item)
    raise ApiError(404, f'Tag {tag} is not applied to log message {n}.')


@blueprint.route('/events/<graceid>/log/<n>/tag/<tag>', methods=['DELETE'])
@blueprint.route('/superevents/<graceid>/logs/<n>/tags/<tag>',
                 methods=['DELETE'])
def tag_remove(graceid, n, tag):
    store().remove_tag(graceid, n, tag, g.user)
    return Response(status=204)


@blueprint.route('/events/<graceid>/files', methods=['GET'])
@blueprint.route('/superevents/<graceid>/files', methods=['GET'])
def file_list(graceid):
    return json_response(store().files(graceid))


@blueprint.route('/events/<graceid>/files/<path:filename>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/files/<path:filename>',
                 methods=['GET'])
def file_get(graceid, filename):
    path = store().file_path(graceid, filename.rstrip('/'))
    name = filename.rstrip('/').rsplit(',', 1)[0]
    mimetype, _ = mimetypes.guess_type(name)
    if mimetype is None or name.endswith('.gz'):
        mimetype = 'application/octet-stream'
    with open(path, 'rb') as f:
        data = f.read()
    return Response(data, mimetype=mimetype, headers={
        'Content-Disposition': f'inline; filename="{name}"'})


@blueprint.route('/events/<graceid>/labels', methods=['GET'])
def event_label_list(graceid):
    labels = store().labels(graceid)
    return json_response({'labels': labels, 'links': [
        {'self': request.url, 'event': store().event_url(
            store().object_key(graceid))}]})


@blueprint.route('/superevents/<graceid>/labels', methods=['GET'])
def superevent_label_list(graceid):
    return json_response({'labels': store().labels(graceid),
                          'links': {'self': request.url}})


@blueprint.route('/events/<graceid>/labels/<name>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/labels/<name>', methods=['GET'])
def label_get(graceid, name):
    return json_response(store().get_label(graceid, name))


@blueprint.route('/events/<graceid>/labels/<name>', methods=['PUT'])
def event_label_add(graceid, name):
    label, created = store().add_label(graceid, name, g.user)
    return json_response(label, 201 if created else 200)


@blueprint.route('/superevents/<graceid>/labels', methods=['POST'])
def superevent_label_add(graceid):
    fields = RequestFields()
    name = fields.get('name')
    if not name:
        raise bad_request('name: This field is required.')
    label, _ = store().add_label(graceid, name, g.user, unique=True)
    return json_response(label, 201)


@blueprint.route('/events/<graceid>/labels/<name>', methods=['DELETE'])
@blueprint.route('/superevents/<graceid>/labels/<name>', methods=['DELETE'])
def label_remove(graceid, name):
    store().remove_label(graceid, name, g.user)
    return Response(status=204)


@blueprint.route('/events/<graceid>/voevent', methods=['GET'])
@blueprint.route('/superevents/<graceid>/voevents', methods=['GET'])
def voevent_list(graceid):
    voevents = store().voevents(graceid)
    return json_response({'start': 0, 'numRows': len(voevents),
                          'voevents': voevents,
                          'links': {'self': request.url}})


@blueprint.route('/events/<graceid>/voevent', methods=['POST'])
@blueprint.route('/superevents/<graceid>/voevents', methods=['POST'])
def voevent_create(graceid):
    fields = RequestFields()
    voevent = store().create_voevent(graceid, fields.as_dict(), g.user)
    return json_response(voevent, 201,
                         {'Location': voevent['links']['self']})


@blueprint.route('/events/<graceid>/voevent/<n>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/voevents/<n>', methods=['GET'])
def voevent_get(graceid, n):
    return json_response(store().get_voevent(graceid, n))


@blueprint.route('/events/<graceid>/emobservation', methods=['GET'])
@blueprint.route('/superevents/<graceid>/emobservations', methods=['GET'])
def emobservation_list(graceid):
    store().object_key(graceid)
    return json_response({'start': 0, 'numRows': 0, 'observations': [],
                          'links': {'self': request.url}})


# --- superevents ----------------------------------------------------------

@blueprint.route('/superevents', methods=['POST'])
def superevents_create():
    fields = RequestFields()
    superevent = store().create_superevent(
        t_start=fields.get('t_start'), t_0=fields.get('t_0'),
        t_end=fields.get('t_end'),
        preferred_event=fields.get('preferred_event'),
        category=fields.get('category'), events=fields.getlist('events'),
        labels=fields.getlist('labels'), submitter=g.user)
    return json_response(superevent, 201,
                         {'Location': superevent['links']['self']})


@blueprint.route('/superevents/<superevent_id>', methods=['GET'])
def superevent_get(superevent_id):
    return json_response(store().get_superevent(superevent_id))


@blueprint.route('/superevents/<superevent_id>', methods=['PATCH'])
def superevent_update(superevent_id):
    fields = RequestFields()
    keys = ('t_start', 't_0', 't_end', 'preferred_event', 'em_type',
            'time_coinc_far', 'space_coinc_far')
    values = {key: fields.get(key) for key in keys if key in fields}
    return json_response(store().update_superevent(superevent_id, values,
                                                   g.user))


def _event_reference(graceid):
    return {'self': store().event_url(graceid), 'graceid': graceid}


@blueprint.route('/superevents/<superevent_id>/events', methods=['GET'])
def superevent_event_list(superevent_id):
    events = [_event_reference(graceid)
              for graceid in store().superevent_events(superevent_id)]
    return json_response({'events': events, 'numRows': len(events),
                          'links': {'self': request.url}})


@blueprint.route('/superevents/<superevent_id>/events', methods=['POST'])
def superevent_event_add(superevent_id):
    fields = RequestFields()
    graceid = store().add_event(superevent_id, fields.get('event'), g.user)
    return json_response(_event_reference(graceid), 201)


@blueprint.route('/superevents/<superevent_id>/events/<graceid>',
                 methods=['GET'])
def superevent_event_get(superevent_id, graceid):
    graceid = store().object_key(graceid)
    if graceid not in store().superevent_events(superevent_id):
        raise ApiError(404, f'Event {graceid} is not in superevent '
                       f'{superevent_id}.')
    return json_response(_event_reference(graceid))


@blueprint.route('/superevents/<superevent_id>/events/<graceid>',
                 methods=['DELETE'])
def superevent_event_remove(superevent_id, graceid):
    store().remove_event(superevent_id, graceid, g.user)
    return Response(status=204)


@blueprint.route('/superevents/<superevent_id>/pipeline_preferred_events',
                 methods=['GET'])
def pipeline_preferred_list(superevent_id):
    events = [_event_reference(graceid) for graceid
              in store().pipeline_preferred_events(superevent_id)]
    return json_response({'pipeline_preferred_events': events,
                          'numRows': len(events),
                          'links': {'self': request.url}})


@blueprint.route('/superevents/<superevent_id>/pipeline_preferred_events',
                 methods=['POST'])
def pipeline_preferred_add(superevent_id):
    fields = RequestFields()
    graceid = store().add_pipeline_preferred(superevent_id,
                                             fields.get('event'), g.user)
    return json_response(_event_reference(graceid), 201)


@blueprint.route(
    '/superevents/<superevent_id>/pipeline_preferred_events/<graceid>',
    methods=['DELETE'])
def pipeline_preferred_remove(superevent_id, graceid):
    store().remove_pipeline_preferred(superevent_id, graceid, g.user)
    return Response(status=204)


@blueprint.route('/superevents/<superevent_id>/confirm-as-gw',
                 methods=['POST'])
def superevent_confirm(superevent_id):
    fields = RequestFields()
    return json_response(store().confirm_as_gw(
        superevent_id, fields.get('gw_id') or None, g.user))


@blueprint.route('/superevents/<superevent_id>/signoffs', methods=['GET'])
def signoff_list(superevent_id):
    signoffs = store().signoffs(superevent_id)
    return json_response({'start': 0, 'numRows': len(signoffs),
                          'signoffs': signoffs,
                          'links': {'self': request.url}})


@blueprint.route('/superevents/<superevent_id>/signoffs', methods=['POST'])
def signoff_create(superevent_id):
    fields = RequestFields()
    return json_response(store().create_signoff(
        superevent_id, fields.get('signoff_type'), fields.get('instrument'),
        fields.get('status'), fields.get('comment'), g.user), 201)


@blueprint.route('/superevents/<superevent_id>/signoffs/<typeinst>',
                 methods=['GET'])
def signoff_get(superevent_id, typeinst):
    return json_response(store().get_signoff(superevent_id, typeinst))


@blueprint.route('/superevents/<superevent_id>/signoffs/<typeinst>',
                 methods=['PATCH'])
def signoff_update(superevent_id, typeinst):
    fields = RequestFields()
    return json_response(store().update_signoff(
        superevent_id, typeinst, fields.get('status'),
        fields.get('comment'), g.user))


@blueprint.route('/superevents/<superevent_id>/signoffs/<typeinst>',
                 methods=['DELETE'])
def signoff_delete(superevent_id, typeinst):
    store().delete_signoff(superevent_id, typeinst, g.user)
    return Response(status=204)


@blueprint.route('/superevents/<superevent_id>/permissions', methods=['GET'])
def permission_list(superevent_id):
    permissions = store().permissions(superevent_id)
    return json_response({'start': 0, 'numRows': len(permissions),
                          'permissions': permissions,
                          'links': {'self': request.url}})


@blueprint.route('/superevents/<superevent_id>/permissions/modify',
                 methods=['POST'])
def permission_modify(superevent_id):
    fields = RequestFields()
    return json_response(store().modify_permissions(
        superevent_id, fields.get('action'), g.user))
