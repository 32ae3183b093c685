"""The REST API, registered under ``/api/``, ``/api/v1/`` and ``/api/v2/``.

Routes, encodings and response shapes follow GraceDB as the clients
gracedb-sdk and ligo-gracedb use it. One module per resource family, each
a blueprint nested in :data:`blueprint`.
"""

from flask import Blueprint

from . import (
    events,
    labels,
    logs,
    permissions,
    root,
    search,
    signoffs,
    superevents,
    voevents,
)

blueprint = Blueprint('api', __name__)
for module in (root, search, events, superevents, logs, labels, voevents,
               signoffs, permissions):
    blueprint.register_blueprint(module.blueprint)
