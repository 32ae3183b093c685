"""The GraceDB client of each worker process and the retry policy of the
tasks that talk to GraceDB.

Each worker process holds one :class:`gracedb_sdk.Client`, built on first
use from :obj:`~gwcelery.conf.gracedb_url` (so the same tasks talk to the
local server or to a production GraceDB) and dropped after a fork.

Every task declared with :func:`task` (all the tasks of
:mod:`gwcelery.tasks.gracedb`, and every task elsewhere that calls GraceDB,
directly or through those tasks) retries with exponential backoff and full
jitter (up to :obj:`~gwcelery.conf.gracedb_max_retries` times, from about
:obj:`~gwcelery.conf.gracedb_retry_backoff` seconds, waits capped at
:obj:`~gwcelery.conf.gracedb_retry_backoff_max` seconds) when GraceDB
cannot be reached, times out (:obj:`~gwcelery.conf.gracedb_timeout`) or
answers one of :obj:`~gwcelery.conf.gracedb_retry_statuses` (and 409
Conflict for the tasks that declare it safe to repeat). Any other error
answer fails at once with a :class:`requests.HTTPError` whose message
includes the server's.
"""

import functools
import json
import os

import requests
from requests.adapters import HTTPAdapter

from .. import app

#: HTTP status of a conflict, retried only by tasks that are safe to repeat.
CONFLICT = 409


class GraceDbUnavailable(Exception):
    """GraceDB could not be reached, timed out or answered a status worth
    repeating the request for; the task is retried."""


class TimeoutAdapter(HTTPAdapter):
    """An HTTP adapter that applies a default time-out to every request."""

    def __init__(self, timeout, **kwargs):
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, timeout=None, **kwargs):
        return super().send(request, timeout=timeout or self.timeout,
                            **kwargs)


_client = None


def _forget_client():
    global _client
    _client = None


# A session's sockets must not be shared between a parent and its forks.
os.register_at_fork(after_in_child=_forget_client)


def client():
    """This process's gracedb-sdk client for ``app.conf.gracedb_url`` (rebuilt
    when that setting or :obj:`~gwcelery.conf.gracedb_timeout` changes)."""
    global _client
    url = app.conf['gracedb_url']
    timeout = app.conf['gracedb_timeout']
    if _client is None or (_client.url, _client.timeout) != (url, timeout):
        from gracedb_sdk import Client

        new_client = Client(url)
        new_client.timeout = timeout
        adapter = TimeoutAdapter(timeout)
        new_client.session.mount('http://', adapter)
        new_client.session.mount('https://', adapter)
        if _client is not None:
            _client.close()
        _client = new_client
    return _client


def server_message(response):
    """The error message in a GraceDB error response body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict) and 'error' in body:
        return str(body['error'])
    if isinstance(body, str):
        return body
    return json.dumps(body)


def retryable(status, conflict_safe=False):
    """Whether an answer with HTTP ``status`` is worth trying again:
    :obj:`~gwcelery.conf.gracedb_retry_statuses`, and 409 Conflict if the
    request is safe to repeat (``conflict_safe``)."""
    return (status in app.conf['gracedb_retry_statuses']
            or (conflict_safe and status == CONFLICT))


def translate_errors(func, conflict_safe=False):
    """Wrap ``func`` so that transient failures become
    :class:`GraceDbUnavailable` (retried) and other HTTP errors ones that
    carry the server's message."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except requests.HTTPError as exc:
            response = exc.response
            if response is None:
                raise GraceDbUnavailable(str(exc)) from exc
            message = (f'{response.status_code} {response.reason} for '
                       f'{response.request.method} {response.url}: '
                       f'{server_message(response)}')
            if retryable(response.status_code, conflict_safe):
                raise GraceDbUnavailable(message) from exc
            raise requests.HTTPError(message, response=response,
                                     request=exc.request) from None
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise GraceDbUnavailable(f'{type(exc).__name__}: {exc}') from exc

    return wrapper


def retry_options():
    """The Celery task options of the GraceDB retry policy (read from the
    configuration when a task is declared)."""
    conf = app.conf
    return dict(autoretry_for=(GraceDbUnavailable,),
                retry_backoff=conf['gracedb_retry_backoff'],
                retry_backoff_max=conf['gracedb_retry_backoff_max'],
                retry_jitter=True, max_retries=conf['gracedb_max_retries'])


def task(*keys, via=None, conflict_safe=False, **options):
    """Decorator: declare a task that talks to GraceDB, with the retry
    policy.

    Options go to ``app.task`` (they may override the policy's, e.g.
    ``max_retries``). ``conflict_safe`` also retries after 409 Conflict.
    To declare a listener's handler, give its registering decorator as
    ``via`` and its keys::

        @gracedb.task(queue='exttrig')
        def upload_notice(payload):
            ...

        @gracedb.task(*NODES, via=lvalert.handler, queue='superevent')
        def handle(alert):
            ...

    The task must be safe to run again from the start: a retry repeats
    everything it did before the failure.
    """
    if len(keys) == 1 and callable(keys[0]) and via is None and not options:
        return task()(keys[0])  # used bare: @gracedb.task
    if keys and via is None:
        raise TypeError('keys are only for a registering decorator (via)')

    def decorate(func):
        merged = {**retry_options(), **options}
        register = app.task(**merged) if via is None else via(*keys,
                                                              **merged)
        return register(translate_errors(func, conflict_safe))
    return decorate


def retrying():
    """Whether the task running in this process (or the task that called
    the current one inline) is a retry or a redelivered message (its
    worker was lost): an earlier try may have done part of its work."""
    current = app.current_worker_task
    if current is None:
        return False
    request = current.request
    return bool(request.retries
                or (request.delivery_info or {}).get('redelivered'))


def status_is(exc, status, *messages):
    """Whether the :class:`requests.HTTPError` ``exc`` is an answer with
    HTTP ``status`` whose server message contains one of ``messages`` (any
    message if none are given)."""
    response = exc.response
    if response is None or response.status_code != status:
        return False
    text = server_message(response)
    return not messages or any(message in text for message in messages)
