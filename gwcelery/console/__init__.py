"""The operator console: a small web application to steer alerts by hand.

Started by ``gwcelery console`` (or ``gwcelery flask run``) and by
``gwcelery local``. Its pages list the superevents and their state; its
forms send a preliminary notice, change the preferred event, send an
Update with chosen files or a Retraction, apply ``RAVEN_ALERT`` and
inject mock events, each by starting the pipeline's own tasks and
waiting for their outcome, at most once per submitted form
(:mod:`gwcelery.console.once`). See ``doc/console.rst``.
"""

import os

from flask import Flask, render_template

from .. import app as celery_app
from . import auth


def create_app(users_file=None, trust_remote_user=False, secret_key=None,
               action_timeout=None):
    """Return the console's Flask application.

    ``users_file`` (default :obj:`~gwcelery.conf.console_users_file`) is
    a netrc file of users; ``trust_remote_user`` takes a front-end
    proxy's ``REMOTE_USER``; ``secret_key`` signs the session cookie
    (a new random key by default, so sessions end with the process);
    ``action_timeout`` (default
    :obj:`~gwcelery.conf.console_action_timeout`) is how long an action
    is waited for.
    """
    if users_file is None:
        users_file = celery_app.conf.console_users_file
    flask_app = Flask(__name__)
    flask_app.config.update(
        SECRET_KEY=secret_key or os.urandom(32),
        CONSOLE_USERS=auth.read_users(users_file),
        CONSOLE_TRUST_REMOTE_USER=trust_remote_user,
        CONSOLE_ACTION_TIMEOUT=action_timeout,
        SESSION_COOKIE_SAMESITE='Strict',
    )
    from .views import blueprint

    flask_app.register_blueprint(blueprint)
    register_error_pages(flask_app)
    return flask_app


def register_error_pages(flask_app):
    """Errors as pages of the console; 401 asks for Basic credentials."""
    def error_page(error):
        response = flask_app.make_response((
            render_template('console/error.html', error=error),
            error.code))
        if error.code == 401:
            response.headers['WWW-Authenticate'] = \
                'Basic realm="gwcelery console"'
        return response

    for code in (400, 401, 404, 405):
        flask_app.register_error_handler(code, error_page)
