"""Permissions of superevents: exposing them to the public, or hiding
them."""

from flask import Blueprint, g

from ..current import store
from ..fields import RequestFields
from ..responses import json_response, list_response

blueprint = Blueprint('permissions', __name__)


@blueprint.route('/superevents/<superevent_id>/permissions', methods=['GET'])
def permission_list(superevent_id):
    """The permissions granted on a superevent."""
    return list_response('permissions', store().permissions(superevent_id))


@blueprint.route('/superevents/<superevent_id>/permissions/modify',
                 methods=['POST'])
def permission_modify(superevent_id):
    """``expose`` or ``hide`` a superevent (the ``action`` field)."""
    fields = RequestFields()
    return json_response(store().modify_permissions(
        superevent_id, fields.get('action'), g.user))
