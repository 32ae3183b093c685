"""Each operator action at most once: action keys, claimed in Redis.

Every form that sends or changes something carries an *action key*, a
random token made when the page is rendered (:func:`new_key`); a script
may send its own (any fresh random string of :data:`KEY_FORMAT`). Before
the console starts anything it claims the key in the broker's Redis
(:func:`claim`, ``SET NX`` with an expiry of
``console_action_key_expiry`` seconds, a day by default), so that of two
requests with one key (a double click, a resubmitted page, a retried
script) exactly one starts the action. The one that claimed it records
the task it started (:func:`record_task`) and the outcome it showed
(:func:`record_result`); any other request with that key starts nothing
and shows that same outcome, waiting for it if need be
(:func:`wait_for_result`).

A key belongs to one form: a record remembers the page's path (the
superevent and the action), and a key sent to another form is refused.
"""

import json
import re
import secrets
import time

import redis

from .. import app

#: Name of the hidden form field that carries the action key.
FIELD = 'action_key'

#: What an action key looks like (URL-safe Base64, as
#: :func:`secrets.token_urlsafe` gives).
KEY_FORMAT = re.compile(r'[A-Za-z0-9_-]{16,128}')

#: Seconds between two reads of a record while waiting for its outcome.
POLL_INTERVAL = 0.2


def new_key():
    """A fresh action key, for one form of a rendered page."""
    return secrets.token_urlsafe(16)


def is_valid(key):
    """Whether ``key`` is a well-formed action key."""
    return KEY_FORMAT.fullmatch(key or '') is not None


def _client():
    return redis.Redis.from_url(app.conf.broker_url)


def _name(key):
    return f'gwcelery:console:action:{key}'


def _expiry():
    return int(app.conf['console_action_key_expiry'])


def _decode(raw):
    return None if raw is None else json.loads(raw)


def lookup(key):
    """The record of a claimed key (``path``, ``user``, ``claimed``,
    ``task_id``, ``result``), or ``None`` if it is not claimed."""
    client = _client()
    try:
        return _decode(client.get(_name(key)))
    finally:
        client.close()


def claim(key, path, user):
    """Claim ``key`` for the form at ``path`` submitted by ``user``.
    Returns ``None`` if this request holds it now (and must start the
    action), else the record of the request that holds it."""
    record = {'path': path, 'user': user, 'claimed': time.time(),
              'task_id': None, 'result': None}
    client = _client()
    try:
        while True:
            if client.set(_name(key), json.dumps(record), nx=True,
                          ex=_expiry()):
                return None
            held = _decode(client.get(_name(key)))
            if held is not None:
                return held
            # The key expired between SET and GET: claim it again.
    finally:
        client.close()


def _change(key, **values):
    """Set fields of a claimed key's record, keeping its expiry."""
    client = _client()
    try:
        record = _decode(client.get(_name(key)))
        if record is None:  # expired: nothing left to tell
            return
        record.update(values)
        client.set(_name(key), json.dumps(record), xx=True, keepttl=True)
    finally:
        client.close()


def record_task(key, task_id):
    """Remember the id of the task that ``key``'s action started."""
    _change(key, task_id=task_id)


def record_result(key, result):
    """Remember the outcome (a JSON-able dict) shown for ``key``: any
    later request with this key shows it too."""
    _change(key, result=result)


def wait_for_result(key, timeout):
    """The record of ``key`` once it holds an outcome, or the record as
    it is (``result`` ``None``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    client = _client()
    try:
        while True:
            record = _decode(client.get(_name(key)))
            if record is None or record['result'] is not None or \
                    time.monotonic() >= deadline:
                return record
            time.sleep(POLL_INTERVAL)
    finally:
        client.close()
