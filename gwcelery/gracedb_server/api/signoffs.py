"""Signoffs of superevents."""

from flask import Blueprint, Response, g

from ..current import store
from ..fields import RequestFields
from ..responses import json_response, list_response

blueprint = Blueprint('signoffs', __name__)


@blueprint.route('/superevents/<superevent_id>/signoffs', methods=['GET'])
def signoff_list(superevent_id):
    """The signoffs of a superevent."""
    return list_response('signoffs', store().signoffs(superevent_id))


@blueprint.route('/superevents/<superevent_id>/signoffs', methods=['POST'])
def signoff_create(superevent_id):
    """Sign off a superevent."""
    fields = RequestFields()
    return json_response(store().create_signoff(
        superevent_id, fields.get('signoff_type'), fields.get('instrument'),
        fields.get('status'), fields.get('comment'), g.user), 201)


@blueprint.route('/superevents/<superevent_id>/signoffs/<typeinst>',
                 methods=['GET'])
def signoff_get(superevent_id, typeinst):
    """One signoff (``ADV``, ``OPH1``, ...)."""
    return json_response(store().get_signoff(superevent_id, typeinst))


@blueprint.route('/superevents/<superevent_id>/signoffs/<typeinst>',
                 methods=['PATCH'])
def signoff_update(superevent_id, typeinst):
    """Change the status or comment of a signoff."""
    fields = RequestFields()
    return json_response(store().update_signoff(
        superevent_id, typeinst, fields.get('status'),
        fields.get('comment'), g.user))


@blueprint.route('/superevents/<superevent_id>/signoffs/<typeinst>',
                 methods=['DELETE'])
def signoff_delete(superevent_id, typeinst):
    """Delete a signoff."""
    store().delete_signoff(superevent_id, typeinst, g.user)
    return Response(status=204)
