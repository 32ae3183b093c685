"""The log messages of events and superevents, their tags, and the files
uploaded with them. Events and superevents spell the routes differently
(``log``/``tag`` and ``logs``/``tags``)."""

import mimetypes

from flask import Blueprint, Response, g

from ..current import store
from ..errors import ApiError, bad_request
from ..fields import RequestFields, uploaded_file
from ..responses import json_response, list_response

blueprint = Blueprint('logs', __name__)


@blueprint.route('/events/<graceid>/log', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs', methods=['GET'])
def log_list(graceid):
    """The log of an object."""
    return list_response('log', store().logs(graceid))


@blueprint.route('/events/<graceid>/log', methods=['POST'])
@blueprint.route('/superevents/<graceid>/logs', methods=['POST'])
def log_create(graceid):
    """Write a log message, with an ``upload`` file, tags and a label if
    the request gives them."""
    fields = RequestFields()
    filename, contents = uploaded_file('upload')
    if contents is not None and not filename:
        raise bad_request('An uploaded file needs a file name.')
    entry = store().create_log(
        graceid, fields.get('comment') or '', g.user, filename, contents,
        tags=fields.getlist('tagname'),
        display_names=fields.getlist('displayName'),
        label=fields.get('label') or None)
    return json_response(entry, 201, {'Location': entry['self']})


@blueprint.route('/events/<graceid>/log/<n>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs/<n>', methods=['GET'])
def log_get(graceid, n):
    """One log message."""
    return json_response(store().get_log(graceid, n))


@blueprint.route('/events/<graceid>/log/<n>/tag', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs/<n>/tags', methods=['GET'])
def tag_list(graceid, n):
    """The tags of a log message."""
    return json_response({'tags': store().tags(graceid, n)})


@blueprint.route('/events/<graceid>/log/<n>/tag/<tag>', methods=['PUT'])
def event_tag_add(graceid, n, tag):
    """Tag a log message of an event (the tag named in the URL)."""
    fields = RequestFields()
    store().add_tag(graceid, n, tag, fields.get('displayName'), g.user)
    return json_response('Tag created.', 201)


@blueprint.route('/superevents/<graceid>/logs/<n>/tags', methods=['POST'])
def superevent_tag_add(graceid, n):
    """Tag a log message of a superevent (the tag named in the body)."""
    fields = RequestFields()
    tag = store().add_tag(graceid, n, fields.required('name'),
                          fields.get('displayName'), g.user)
    return json_response(tag, 201)


@blueprint.route('/events/<graceid>/log/<n>/tag/<tag>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/logs/<n>/tags/<tag>',
                 methods=['GET'])
def tag_get(graceid, n, tag):
    """One tag of a log message."""
    for item in store().tags(graceid, n):
        if item['name'] == tag:
            return json_response(item)
    raise ApiError(404, f'Tag {tag} is not applied to log message {n}.')


@blueprint.route('/events/<graceid>/log/<n>/tag/<tag>', methods=['DELETE'])
@blueprint.route('/superevents/<graceid>/logs/<n>/tags/<tag>',
                 methods=['DELETE'])
def tag_remove(graceid, n, tag):
    """Take a tag off a log message."""
    store().remove_tag(graceid, n, tag, g.user)
    return Response(status=204)


@blueprint.route('/events/<graceid>/files', methods=['GET'])
@blueprint.route('/superevents/<graceid>/files', methods=['GET'])
def file_list(graceid):
    """The files of an object: each version and the bare latest names."""
    return json_response(store().files(graceid))


@blueprint.route('/events/<graceid>/files/<path:filename>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/files/<path:filename>',
                 methods=['GET'])
def file_get(graceid, filename):
    """The contents of a file (``name`` or ``name,version``)."""
    path = store().file_path(graceid, filename.rstrip('/'))
    name = filename.rstrip('/').rsplit(',', 1)[0]
    mimetype, _ = mimetypes.guess_type(name)
    if mimetype is None or name.endswith('.gz'):
        mimetype = 'application/octet-stream'
    with open(path, 'rb') as f:
        data = f.read()
    return Response(data, mimetype=mimetype, headers={
        'Content-Disposition': f'inline; filename="{name}"'})
