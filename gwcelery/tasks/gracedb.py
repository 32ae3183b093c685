"""Tasks that talk to GraceDB, and the decorator that gives any task the
GraceDB retry policy.

Each worker process holds one :class:`gracedb_sdk.Client`, built on first
use from :obj:`~gwcelery.conf.gracedb_url` (so the same tasks talk to the
local server or to a production GraceDB) and dropped after a fork.

Every task declared with :func:`task` (all the tasks here, and every task
elsewhere that calls GraceDB, directly or through these tasks) retries
with exponential backoff and full jitter (up to
:obj:`~gwcelery.conf.gracedb_max_retries` times, from about
:obj:`~gwcelery.conf.gracedb_retry_backoff` seconds, waits capped at
:obj:`~gwcelery.conf.gracedb_retry_backoff_max` seconds) when GraceDB
cannot be reached, times out (:obj:`~gwcelery.conf.gracedb_timeout`) or
answers one of :obj:`~gwcelery.conf.gracedb_retry_statuses` (and 409
Conflict for the tasks that declare it safe to repeat). Any other error
answer fails at once with a :class:`requests.HTTPError` whose message
includes the server's.

A task here that another task calls inline does not retry by itself
(Celery re-raises the :class:`GraceDbUnavailable`): the calling task,
declared with :func:`task` too, retries as a whole, so it must be safe to
run again; the creation tasks here look up what an earlier try may have
created before they create anything.

A ``graceid`` argument may name an event (``G123``) or a superevent
(``S250101a``).
"""

import functools
import json
import logging
import os

import requests
from requests.adapters import HTTPAdapter

from .. import app

log = logging.getLogger(__name__)

#: HTTP status of a conflict, retried only by tasks that are safe to repeat.
CONFLICT = 409

#: The message of GraceDB's 400 answer to a PATCH that changes nothing.
NO_CHANGE_MESSAGE = 'Request would not modify the superevent'

#: The messages of GraceDB's 400 answer to applying a superevent label
#: twice (legacy API and v2 API).
DUPLICATE_LABEL_MESSAGES = ('The fields superevent, name must make a unique '
                            'set.', 'already applied to superevent')

#: The message of GraceDB's 400 answer to a second signoff of one kind.
SIGNOFF_EXISTS_MESSAGE = 'must make a unique set'

VOEVENT_TYPE_NAMES = {'EW': 'earlywarning', 'PR': 'preliminary',
                      'IN': 'initial', 'UP': 'update', 'RE': 'retraction'}


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


def _own_task(conflict_safe=False, **options):
    """Declare one of this module's tasks (not shared between apps)."""
    def decorate(func):
        return task(shared=False, name=f'{__name__}.{func.__name__}',
                    conflict_safe=conflict_safe, **options)(func)
    return decorate


def _status_is(exc, status, *messages):
    response = exc.response
    if response is None or response.status_code != status:
        return False
    text = server_message(response)
    return not messages or any(message in text for message in messages)


# --- events ---------------------------------------------------------------


@_own_task(conflict_safe=True)
def get_event(graceid):
    """Return the event (or superevent) ``graceid`` as a dict."""
    return client().events[graceid].get()


@_own_task(conflict_safe=True)
def get_events(query):
    """Return the list of events that match the GraceDB ``query``."""
    return list(client().events.search(query=query))


@_own_task()
def create_event(filecontents, search, pipeline, group, labels=(),
                 filename='initial.data', lookup=None):
    """Upload a new event from its file (e.g. a ``coinc.xml``); return the
    event.

    ``lookup``, a GraceDB query that matches the event if an earlier try
    of this upload created it (e.g. its pipeline, search and GPS time),
    makes the upload safe to repeat: an event among the matches whose
    file is ``filecontents`` is returned instead of creating another.
    """
    if lookup is not None:
        for event in client().events.search(query=lookup):
            graceid = event['graceid']
            stored = client().events[graceid].files['initial.data']
            if stored.get().read() == filecontents:
                log.info('%s was uploaded already (%s)', graceid, lookup)
                return event
    return client().events.create(
        filename=filename, filecontents=filecontents, search=search,
        pipeline=pipeline, group=group, labels=list(labels) or None)


@_own_task(conflict_safe=True)
def replace_event(graceid, payload):
    """Replace the data of event ``graceid`` with a new file ``payload``."""
    client().events.update(graceid, filecontents=payload)


# --- superevents ----------------------------------------------------------


@_own_task(conflict_safe=True)
def get_superevent(superevent_id):
    """Return the superevent ``superevent_id`` as a dict."""
    return client().superevents[superevent_id].get()


@_own_task(conflict_safe=True)
def get_superevents(query):
    """Return the list of superevents that match the GraceDB ``query``."""
    return list(client().superevents.search(query=query))


@_own_task()
def create_superevent(graceid, t0, t_start, t_end):
    """Create a superevent with ``graceid`` as its preferred event; the
    category follows from the graceid's prefix. Return the superevent."""
    return client().superevents.create(
        t_start=t_start, t_0=t0, t_end=t_end, preferred_event=graceid)


@_own_task(conflict_safe=True)
def update_superevent(superevent_id, t_start=None, t_end=None, t_0=None,
                      preferred_event=None, em_type=None,
                      time_coinc_far=None, space_coinc_far=None):
    """Change the given (non-``None``) parameters of a superevent. A request
    that changes nothing is not an error."""
    values = {key: value for key, value in (
        ('t_start', t_start), ('t_end', t_end), ('t_0', t_0),
        ('preferred_event', preferred_event), ('em_type', em_type),
        ('time_coinc_far', time_coinc_far),
        ('space_coinc_far', space_coinc_far)) if value is not None}
    if not values:
        return
    try:
        client().superevents.update(superevent_id, **values)
    except requests.HTTPError as exc:
        if not _status_is(exc, 400, NO_CHANGE_MESSAGE):
            raise
        log.info('Superevent %s already has %s', superevent_id, values)


@_own_task(conflict_safe=True)
def add_event_to_superevent(superevent_id, graceid):
    """Add the event ``graceid`` to a superevent."""
    client().superevents[superevent_id].add(graceid)


# --- labels ---------------------------------------------------------------


@_own_task(conflict_safe=True)
def create_label(label, graceid):
    """Apply ``label`` to an event or superevent. A label that is already
    applied is not an error (GraceDB answers 200 for events and 400 for
    superevents)."""
    try:
        client().events[graceid].labels.create(label)
    except requests.HTTPError as exc:
        if not _status_is(exc, 400, *DUPLICATE_LABEL_MESSAGES):
            raise
        log.info('Label %s was already applied to %s', label, graceid)


@_own_task(conflict_safe=True)
def remove_label(label, graceid):
    """Remove ``label`` from an event or superevent. A label that is not
    applied is not an error (GraceDB answers 404)."""
    try:
        client().events[graceid].labels.delete(label)
    except requests.HTTPError as exc:
        if not _status_is(exc, 404):
            raise
        log.info('Label %s was not applied to %s (or %s does not exist)',
                 label, graceid, graceid)


@_own_task(conflict_safe=True)
def get_labels(graceid):
    """Return the names of the labels of an event or superevent."""
    return [label['name'] for label in client().events[graceid].labels.get()]


# --- logs and files -------------------------------------------------------


#: How many of the latest log entries a retried upload looks through for
#: the entry that an earlier try may have written.
RECENT_LOG_ENTRIES = 20


def _same_entry(entry, filename, message):
    return (entry['comment'] == message
            and (entry.get('filename') or None) == (filename or None))


@_own_task()
def upload(filecontents, filename, graceid, message, tags=(),
           earlier_try=False):
    """Write a log message, with a file unless ``filecontents`` is ``None``,
    and tags. Return the log entry.

    A retry (:func:`retrying`), or a call that says there was an
    ``earlier_try``, first looks for the entry an earlier try may have
    written before its answer was lost (same message and file name among
    the latest entries), so that it is not written twice.
    """
    logs = client().events[graceid].logs
    if earlier_try or retrying():
        for entry in logs.get()[-RECENT_LOG_ENTRIES:]:
            if _same_entry(entry, filename, message):
                log.info('Log entry %s of %s was written by an earlier try',
                         entry['N'], graceid)
                return entry
    if filecontents is None:
        return logs.create(comment=message, tags=list(tags))
    return logs.create(comment=message, filename=filename,
                       filecontents=filecontents, tags=list(tags))


@_own_task(conflict_safe=True)
def download(filename, graceid):
    """Return the contents (bytes) of a file of an event or superevent;
    ``filename`` may carry a version (``name,2``)."""
    return client().events[graceid].files[filename].get().read()


@_own_task(conflict_safe=True)
def get_log(graceid):
    """Return the log entries of an event or superevent."""
    return client().events[graceid].logs.get()


# --- VOEvents -------------------------------------------------------------


def _voevent_type_name(voevent_type):
    return VOEVENT_TYPE_NAMES.get(voevent_type, voevent_type)


@_own_task()
def create_voevent(graceid, voevent_type, **kwargs):
    """Have GraceDB create a VOEvent of ``voevent_type`` (``preliminary``,
    ``initial``, ``update``, ``retraction``, ``earlywarning`` or the codes
    ``PR``, ...) with the given parameters; return the VOEvent's file
    name.

    A retry (:func:`retrying`) first checks whether an earlier try created
    it before its answer was lost: if the latest VOEvent has this type and
    sky map, its file name is returned.
    """
    voevent_type = _voevent_type_name(voevent_type)
    voevents = client().events[graceid].voevents
    if retrying():
        existing = voevents.get()
        if existing:
            latest = max(existing, key=lambda voevent: voevent['N'])
            if (_voevent_type_name(latest['voevent_type']) == voevent_type
                    and latest.get('skymap_filename') == kwargs.get(
                        'skymap_filename', latest.get('skymap_filename'))):
                log.info('%s was created by an earlier try',
                         latest['filename'])
                return latest['filename']
    return voevents.create(voevent_type=voevent_type,
                           **kwargs)['filename']


@_own_task(conflict_safe=True)
def get_voevents(graceid):
    """Return the VOEvents of an event or superevent."""
    return client().events[graceid].voevents.get()


# --- public alerts --------------------------------------------------------


@_own_task(conflict_safe=True)
def create_tag(graceid, log_number, tag):
    """Tag the log entry ``log_number`` of an event or superevent (e.g.
    ``public``). A tag that is already there is not an error."""
    try:
        client().events[graceid].logs[log_number].tags.create(tag)
    except requests.HTTPError as exc:
        if not _status_is(exc, 400):
            raise
        log.info('Log entry %s of %s already tagged %s', log_number,
                 graceid, tag)


@_own_task(conflict_safe=True)
def expose(superevent_id):
    """Make a superevent visible to the public (GraceDB's ``expose``);
    exposing it again is harmless."""
    client().superevents[superevent_id].expose()


@_own_task()
def create_signoff(superevent_id, signoff_type, status, comment=''):
    """Sign off a superevent: ``signoff_type`` ``ADV`` (the advocate's) or
    an instrument (``H1``, ...), ``status`` ``OK`` or ``NO``; GraceDB then
    replaces the request label (``ADVREQ``) with ``ADVOK`` or ``ADVNO``.
    A superevent already signed off (GraceDB answers 400) keeps its
    first sign-off; that is not an error."""
    try:
        client().superevents[superevent_id].signoff(signoff_type, status,
                                                     comment)
    except requests.HTTPError as exc:
        if not _status_is(exc, 400, SIGNOFF_EXISTS_MESSAGE):
            raise
        log.info('%s was already signed off (%s)', superevent_id,
                 signoff_type)
