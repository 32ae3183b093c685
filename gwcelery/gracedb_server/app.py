"""The Flask application: authentication, errors, and the blueprints.

The REST API (:mod:`.api`) is served under ``/api/``, ``/api/v1/`` and
``/api/v2/``; the pages for people (:mod:`.pages`) at ``/superevents/``
and ``/events/``. A trailing slash is optional on every route.
"""

import base64
import binascii
import json
import logging

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from . import api, pages
from .errors import ApiError
from .responses import error_response

log = logging.getLogger(__name__)

#: Methods that change something: subject to the write allow-list.
WRITE_METHODS = ('POST', 'PUT', 'PATCH', 'DELETE')

#: Name recorded as submitter of anonymous requests.
ANONYMOUS = 'anonymous'


def _authenticated_user(passwords):
    """The user name of the request's credentials (``None`` if there are
    none); raise a 401 if a password file is configured and they are
    wrong."""
    header = request.headers.get('Authorization', '')
    scheme, _, credentials = header.partition(' ')
    scheme = scheme.lower()
    if scheme == 'basic':
        try:
            username, _, password = base64.b64decode(
                credentials.strip()).decode().partition(':')
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, 'Invalid basic header.') from None
        if passwords is not None and passwords.get(username) != password:
            raise ApiError(401, 'Invalid username/password.')
        return username
    if scheme == 'bearer':
        token = credentials.strip()
        if passwords is not None and token not in passwords.values():
            raise ApiError(401, 'Invalid token.')
        return _token_subject(token)
    return None


def _token_subject(token):
    """The ``sub`` claim of a JWT, read without verifying its signature;
    for other tokens, the user whose password the token is."""
    parts = token.split('.')
    if len(parts) == 3:
        try:
            payload = parts[1] + '=' * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(payload))
            if isinstance(claims, dict) and claims.get('sub'):
                return str(claims['sub'])
        except (binascii.Error, ValueError):
            pass
    return 'token-user'


def create_app(store, write_users=None, passwords=None):
    """The Flask app serving ``store``.

    ``write_users``: if not ``None``, only these authenticated users may
    change anything. ``passwords``: if not ``None``, a dict user ->
    password (or bearer token) that credentials are checked against.
    """
    app = Flask(__name__)
    app.url_map.strict_slashes = False
    app.config['store'] = store
    allowed_writers = None if write_users is None else set(write_users)

    @app.before_request
    def authenticate():
        user = _authenticated_user(passwords)
        g.user = user or ANONYMOUS
        if request.method in WRITE_METHODS and allowed_writers is not None:
            if user is None:
                raise ApiError(401, 'Authentication credentials were not '
                               'provided.')
            if user not in allowed_writers:
                raise ApiError(403, f'User {user} may not change anything '
                               'on this server.')

    @app.teardown_request
    def close_connection(exc):
        store.release_thread_connection()

    @app.errorhandler(ApiError)
    def api_error(exc):
        return error_response(exc.status, exc.message, exc.v2_message)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        messages = {404: 'Not found.', 405: f'Method "{request.method}" not '
                    'allowed.'}
        return error_response(exc.code,
                              messages.get(exc.code, exc.description))

    @app.errorhandler(Exception)
    def unexpected_error(exc):
        log.exception('Error serving %s %s', request.method, request.path)
        return error_response(500, 'Internal server error; see the server '
                              'log.')

    for prefix, name in (('/api', 'api'), ('/api/v1', 'api_v1'),
                         ('/api/v2', 'api_v2')):
        app.register_blueprint(api.blueprint, url_prefix=prefix, name=name)
    app.register_blueprint(pages.blueprint)
    return app
