"""VOEvents of events and superevents, and their EM observations (which
this server keeps none of)."""

from flask import Blueprint, g, request

from ..current import store
from ..fields import RequestFields, optional_float, to_bool
from ..identifiers import parse_graceid
from ..responses import json_response, list_response

blueprint = Blueprint('voevents', __name__)

#: Probability fields of a VOEvent request and their record keys.
PROBABILITIES = (('ProbHasNS', 'prob_has_ns'),
                 ('ProbHasRemnant', 'prob_has_remnant'), ('BNS', 'prob_bns'),
                 ('NSBH', 'prob_nsbh'), ('BBH', 'prob_bbh'),
                 ('Terrestrial', 'prob_terrestrial'),
                 ('HasMassGap', 'prob_mass_gap'))


def voevent_options(fields, raven):
    """The record fields of a VOEvent request besides its type; with
    ``raven`` (a superevent's VOEvent) the RAVEN coincidence fields too."""
    options = {
        'skymap_type': fields.get('skymap_type') or None,
        'skymap_filename': fields.get('skymap_filename') or None,
        'internal': to_bool(fields.get('internal', True)),
        'open_alert': to_bool(fields.get('open_alert', False)),
        'hardware_inj': to_bool(fields.get('hardware_inj', False)),
        'coinc_comment': to_bool(fields.get('CoincComment', False)),
    }
    for name, key in PROBABILITIES:
        options[key] = optional_float(fields.get(name))
    if raven:
        options.update({
            'raven_coinc': to_bool(fields.get('raven_coinc', False)),
            'combined_skymap_filename':
                fields.get('combined_skymap_filename') or None,
            'ext_gcn': fields.get('ext_gcn') or None,
            'ext_pipeline': fields.get('ext_pipeline') or None,
            'ext_search': fields.get('ext_search') or None,
            'time_coinc_far': optional_float(fields.get('time_coinc_far')),
            'space_coinc_far': optional_float(fields.get('space_coinc_far')),
        })
    return options


@blueprint.route('/events/<graceid>/voevent', methods=['GET'])
@blueprint.route('/superevents/<graceid>/voevents', methods=['GET'])
def voevent_list(graceid):
    """The VOEvents of an object."""
    return list_response('voevents', store().voevents(graceid))


@blueprint.route('/events/<graceid>/voevent', methods=['POST'])
@blueprint.route('/superevents/<graceid>/voevents', methods=['POST'])
def voevent_create(graceid):
    """Create a VOEvent (and its XML file)."""
    fields = RequestFields()
    options = voevent_options(fields, raven=parse_graceid(graceid) is None)
    voevent = store().create_voevent(graceid, fields.get('voevent_type'),
                                     options, g.user)
    return json_response(voevent, 201,
                         {'Location': voevent['links']['self']})


@blueprint.route('/events/<graceid>/voevent/<n>', methods=['GET'])
@blueprint.route('/superevents/<graceid>/voevents/<n>', methods=['GET'])
def voevent_get(graceid, n):
    """One VOEvent."""
    return json_response(store().get_voevent(graceid, n))


@blueprint.route('/events/<graceid>/emobservation', methods=['GET'])
@blueprint.route('/superevents/<graceid>/emobservations', methods=['GET'])
def emobservation_list(graceid):
    """The EM observations of an object: always none."""
    store().object_key(graceid)
    return json_response({'start': 0, 'numRows': 0, 'observations': [],
                          'links': {'self': request.url}})
