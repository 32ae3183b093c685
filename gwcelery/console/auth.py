"""Who may use the console, and forms that only the console's own pages
can submit.

Users: on 127.0.0.1 with no users configured, whoever can reach the port
is the local operator (the account running the console). Otherwise every
request needs HTTP Basic credentials of a user from a netrc file
(:obj:`~gwcelery.conf.console_users_file`), or, behind a front-end
proxy that authenticates (``trust_remote_user``), its ``REMOTE_USER``
(which must be a configured user, if any are).

Forms: each page gets a random token kept in the signed session cookie
(:func:`csrf_token`); a POST without the same token is refused
(:func:`check_csrf`), so that another site cannot make an operator's
browser submit a form.
"""

import getpass
import hmac
import ipaddress
import netrc
import secrets

from flask import abort, current_app, request, session

#: Session key of the form token.
CSRF_KEY = 'csrf_token'

#: Name of the hidden form field that carries the token.
CSRF_FIELD = 'csrf_token'


def read_users(path):
    """``{login: password}`` of every entry of a netrc file."""
    if path is None:
        return {}
    entries = netrc.netrc(path).hosts
    return {login: password for login, _, password in entries.values()
            if login and password}


def is_loopback(host):
    """Whether binding to ``host`` keeps the console on this machine."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host, users, trust_remote_user):
    """Why the console may not listen on ``host``, or ``None``."""
    if is_loopback(host) or users or trust_remote_user:
        return None
    return (f'the console would be open to anyone on {host}: give it users '
            '(a netrc file) or put it behind a proxy that sets REMOTE_USER '
            '(--trust-remote-user)')


def password_matches(users, login, password):
    """Whether ``login`` is a user with this ``password`` (in constant
    time)."""
    expected = users.get(login)
    return expected is not None and hmac.compare_digest(
        expected.encode(), (password or '').encode())


def identify(users, trust_remote_user, remote_user, authorization):
    """The user making a request, or ``None`` if it must authenticate.

    ``remote_user`` is the proxy's ``REMOTE_USER``; ``authorization``
    the request's parsed Basic credentials (or ``None``)."""
    if trust_remote_user and remote_user:
        return remote_user if not users or remote_user in users else None
    if users:
        if authorization is not None and password_matches(
                users, authorization.username, authorization.password):
            return authorization.username
        return None
    if trust_remote_user:
        return None
    return getpass.getuser()


def current_user():
    """The authenticated user of this request; answers 401 otherwise."""
    config = current_app.config
    user = identify(config['CONSOLE_USERS'],
                    config['CONSOLE_TRUST_REMOTE_USER'],
                    request.environ.get('REMOTE_USER'), request.authorization)
    if user is None:
        abort(401)
    return user


def csrf_token():
    """This session's form token (made on first use)."""
    if CSRF_KEY not in session:
        session[CSRF_KEY] = secrets.token_urlsafe(32)
    return session[CSRF_KEY]


def check_csrf():
    """Refuse (400) a POST whose form token is not this session's."""
    if request.method != 'POST':
        return
    expected = session.get(CSRF_KEY)
    given = request.form.get(CSRF_FIELD, '')
    if not expected or not hmac.compare_digest(expected.encode(),
                                               given.encode()):
        abort(400, description='The form has no valid CSRF token: reload '
                               'the page and submit it again.')
