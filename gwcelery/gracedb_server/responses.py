"""What goes back to the client: JSON bodies, lists, and errors worded as
GraceDB words them on each API version."""

import json

from flask import Response, request


def api_version():
    """``'v2'`` for requests under ``/api/v2/``, else ``'v1'``."""
    return 'v2' if request.path.startswith('/api/v2') else 'v1'


def versioned_root():
    """The API root the request came in under (e.g. ``.../api/v2/``)."""
    base = request.host_url + 'api/'
    # The API blueprint is registered as api, api_v1 and api_v2; the
    # outermost of the request's blueprints says which.
    prefix = request.blueprints[-1].replace('api_', '')
    return base if prefix == 'api' else f'{base}{prefix}/'


def json_response(data, status=200, headers=None):
    """A JSON response (``data`` serialised as is)."""
    return Response(json.dumps(data), status=status, headers=headers,
                    mimetype='application/json')


def list_response(key, items):
    """The unpaged list of ``items`` under ``key``, as GraceDB sends the
    logs, VOEvents, signoffs and permissions of an object."""
    return json_response({'start': 0, 'numRows': len(items), key: items,
                          'links': {'self': request.url}})


def error_response(status, message, v2_message=None):
    """A GraceDB-style error: a JSON string on v1, ``{"error": ...}`` on
    v2, a short text page outside the API."""
    if not request.path.startswith('/api'):
        return Response(f'{status}: {message}\n', status=status,
                        mimetype='text/plain')
    if api_version() == 'v2':
        return json_response({'error': v2_message or message}, status)
    return json_response(message, status)

