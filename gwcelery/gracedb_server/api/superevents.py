"""Superevents: creation, parameters, member and pipeline-preferred
events, confirmation as a GW."""

from flask import Blueprint, Response, g, request

from ..current import store
from ..errors import ApiError
from ..fields import RequestFields, category_code, to_float
from ..responses import json_response

blueprint = Blueprint('superevents', __name__)

#: Numeric parameters a PATCH may change; the times may not be emptied.
NUMERIC_PARAMETERS = ('t_start', 't_0', 't_end', 'time_coinc_far',
                      'space_coinc_far')


def _event_reference(graceid):
    return {'self': store().event_url(graceid), 'graceid': graceid}


def _event_list(key, graceids):
    """The response listing some events of a superevent under ``key``."""
    events = [_event_reference(graceid) for graceid in graceids]
    return json_response({key: events, 'numRows': len(events),
                          'links': {'self': request.url}})


@blueprint.route('/superevents', methods=['POST'])
def superevents_create():
    """Create a superevent around its preferred event."""
    fields = RequestFields()
    times = {key: to_float(fields.get(key), key)
             for key in ('t_start', 't_0', 't_end')}
    preferred_event = fields.required('preferred_event')
    superevent = store().create_superevent(
        **times, preferred_event=preferred_event,
        category=category_code(fields.get('category') or 'P'),
        events=fields.getlist('events'), labels=fields.getlist('labels'),
        submitter=g.user)
    return json_response(superevent, 201,
                         {'Location': superevent['links']['self']})


@blueprint.route('/superevents/<superevent_id>', methods=['GET'])
def superevent_get(superevent_id):
    """One superevent, by its id or GW id."""
    return json_response(store().get_superevent(superevent_id))


@blueprint.route('/superevents/<superevent_id>', methods=['PATCH'])
def superevent_update(superevent_id):
    """Change the parameters that the request gives."""
    fields = RequestFields()
    # A missing superevent is a 404 whatever the fields, as in GraceDB.
    store().superevent_row(superevent_id)
    values = {key: to_float(fields.get(key), key,
                            required=key.startswith('t_'))
              for key in NUMERIC_PARAMETERS if key in fields}
    if 'em_type' in fields:
        values['em_type'] = fields.get('em_type') or None
    if 'preferred_event' in fields:
        values['preferred_event'] = fields.get('preferred_event')
    return json_response(store().update_superevent(superevent_id, values,
                                                   g.user))


@blueprint.route('/superevents/<superevent_id>/events', methods=['GET'])
def superevent_event_list(superevent_id):
    """The member events."""
    return _event_list('events', store().superevent_events(superevent_id))


@blueprint.route('/superevents/<superevent_id>/events', methods=['POST'])
def superevent_event_add(superevent_id):
    """Add an event."""
    fields = RequestFields()
    graceid = store().add_event(superevent_id, fields.required('event'),
                                g.user)
    return json_response(_event_reference(graceid), 201)


@blueprint.route('/superevents/<superevent_id>/events/<graceid>',
                 methods=['GET'])
def superevent_event_get(superevent_id, graceid):
    """One member event; 404 if the event is not a member."""
    graceid = store().object_key(graceid)
    if graceid not in store().superevent_events(superevent_id):
        raise ApiError(404, f'Event {graceid} is not in superevent '
                       f'{superevent_id}.')
    return json_response(_event_reference(graceid))


@blueprint.route('/superevents/<superevent_id>/events/<graceid>',
                 methods=['DELETE'])
def superevent_event_remove(superevent_id, graceid):
    """Remove a member event."""
    store().remove_event(superevent_id, graceid, g.user)
    return Response(status=204)


@blueprint.route('/superevents/<superevent_id>/pipeline_preferred_events',
                 methods=['GET'])
def pipeline_preferred_list(superevent_id):
    """The preferred event of each pipeline."""
    return _event_list('pipeline_preferred_events',
                       store().pipeline_preferred_events(superevent_id))


@blueprint.route('/superevents/<superevent_id>/pipeline_preferred_events',
                 methods=['POST'])
def pipeline_preferred_add(superevent_id):
    """Make a member its pipeline's preferred event."""
    fields = RequestFields()
    graceid = store().add_pipeline_preferred(
        superevent_id, fields.required('event'), g.user)
    return json_response(_event_reference(graceid), 201)


@blueprint.route(
    '/superevents/<superevent_id>/pipeline_preferred_events/<graceid>',
    methods=['DELETE'])
def pipeline_preferred_remove(superevent_id, graceid):
    """Take an event off the pipeline-preferred events."""
    store().remove_pipeline_preferred(superevent_id, graceid, g.user)
    return Response(status=204)


@blueprint.route('/superevents/<superevent_id>/confirm-as-gw',
                 methods=['POST'])
def superevent_confirm(superevent_id):
    """Confirm as a GW (with ``gw_id`` if the request gives one)."""
    fields = RequestFields()
    return json_response(store().confirm_as_gw(
        superevent_id, fields.get('gw_id') or None, g.user))
