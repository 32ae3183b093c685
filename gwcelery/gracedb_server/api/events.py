"""Events: created from an uploaded file, read, replaced, and the GRB
attributes of external events patched."""

from flask import Blueprint, Response, g

from ..current import store
from ..fields import RequestFields, to_float, uploaded_file
from ..responses import json_response

blueprint = Blueprint('events', __name__)

#: Fields of ``update-grbevent`` and the GRB attributes they set.
GRB_ATTRIBUTES = {'ra': 'ra', 'dec': 'dec', 'error_radius': 'error_radius',
                  't90': 'T90', 'redshift': 'redshift'}


@blueprint.route('/events', methods=['POST'])
def events_create():
    """Create an event from the file ``eventFile``."""
    fields = RequestFields()
    filename, contents = uploaded_file('eventFile')
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
    """One event."""
    return json_response(store().get_event(graceid))


@blueprint.route('/events/<graceid>', methods=['PUT'])
def event_replace(graceid):
    """Replace an event's data from a new ``eventFile``."""
    filename, contents = uploaded_file('eventFile')
    store().replace_event(graceid, filename, contents, g.user)
    return Response(status=202)


@blueprint.route('/events/<graceid>/update-grbevent', methods=['PATCH'])
def event_update_grb(graceid):
    """Change the GRB attributes (position, T90, ...) of an external
    event."""
    fields = RequestFields()
    values = {}
    for key, attribute in GRB_ATTRIBUTES.items():
        value = to_float(fields.get(key), key, required=False)
        if value is not None:
            values[attribute] = value
    if fields.get('designation'):
        values['designation'] = fields.get('designation')
    return json_response(store().update_grbevent(graceid, values, g.user))
