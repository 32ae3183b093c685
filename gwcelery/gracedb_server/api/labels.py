"""Labels of events and superevents. An event's label is applied with a
``PUT`` of its URL, a superevent's with a ``POST`` of its name."""

from flask import Blueprint, Response, g, request

from ..current import store
from ..fields import RequestFields
from ..responses import json_response

blueprint = Blueprint('labels', __name__)


@blueprint.route('/events/<graceid>/labels', methods=['GET'])
def event_label_list(graceid):
    """The labels of an event."""
    labels = store().labels(graceid)
    return json_response({'labels': labels, 'links': [
        {'self': request.url, 'event': store().event_url(
            store().object_key(graceid))}]})


@blueprint.route('/superevents/<graceid>/labels', methods=['GET'])
def superevent_label_list(graceid):
    """The labels of a superevent."""
    return json_response({'labels': store().labels(graceid),
                          'links': {'self': request.url}})


@blueprint.route('/events/<graceid>/labels/<name>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/labels/<name>', methods=['GET'])
def label_get(graceid, name):
    """One label of an object."""
    return json_response(store().get_label(graceid, name))


@blueprint.route('/events/<graceid>/labels/<name>', methods=['PUT'])
def event_label_add(graceid, name):
    """Apply a label to an event (200 if it was applied already)."""
    label, created = store().add_label(graceid, name, g.user)
    return json_response(label, 201 if created else 200)


@blueprint.route('/superevents/<graceid>/labels', methods=['POST'])
def superevent_label_add(graceid):
    """Apply a label to a superevent (400 if it was applied already)."""
    fields = RequestFields()
    label, _ = store().add_label(graceid, fields.required('name'), g.user,
                                 unique=True)
    return json_response(label, 201)


@blueprint.route('/events/<graceid>/labels/<name>', methods=['DELETE'])
@blueprint.route('/superevents/<graceid>/labels/<name>', methods=['DELETE'])
def label_remove(graceid, name):
    """Remove a label from an object."""
    store().remove_label(graceid, name, g.user)
    return Response(status=204)
