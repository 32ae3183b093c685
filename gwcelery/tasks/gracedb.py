"""Tasks that talk to GraceDB.

They use this process's client (:func:`~gwcelery.tasks.gracedb_client.client`)
and are declared with the GraceDB retry policy
(:func:`~gwcelery.tasks.gracedb_client.task`). The rest of the pipeline
reaches the client and the policy through this module too
(``gracedb.task``, ``gracedb.client``, ``gracedb.retrying``,
``gracedb.GraceDbUnavailable``).

A task here that another task calls inline does not retry by itself
(Celery re-raises the
:class:`~gwcelery.tasks.gracedb_client.GraceDbUnavailable`): the calling
task, declared with :func:`~gwcelery.tasks.gracedb_client.task` too,
retries as a whole, so it must be safe to run again; the creation tasks
here look up what an earlier try may have created before they create
anything.

A ``graceid`` argument may name an event (``G123``) or a superevent
(``S250101a``).
"""

import logging

import requests

from .gracedb_client import (
    GraceDbUnavailable,  # noqa: F401 (callers catch it as gracedb.*)
    client,
    retrying,
    status_is,
    task,
)

log = logging.getLogger(__name__)

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


def _own_task(conflict_safe=False, **options):
    """Declare one of this module's tasks (not shared between apps)."""
    def decorate(func):
        return task(shared=False, name=f'{__name__}.{func.__name__}',
                    conflict_safe=conflict_safe, **options)(func)
    return decorate


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
        if not status_is(exc, 400, NO_CHANGE_MESSAGE):
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
        if not status_is(exc, 400, *DUPLICATE_LABEL_MESSAGES):
            raise
        log.info('Label %s was already applied to %s', label, graceid)


@_own_task(conflict_safe=True)
def remove_label(label, graceid):
    """Remove ``label`` from an event or superevent. A label that is not
    applied is not an error (GraceDB answers 404)."""
    try:
        client().events[graceid].labels.delete(label)
    except requests.HTTPError as exc:
        if not status_is(exc, 404):
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

    A retry (:func:`~gwcelery.tasks.gracedb_client.retrying`), or a call
    that says there was an ``earlier_try``, first looks for the entry an
    earlier try may have written before its answer was lost (same message
    and file name among the latest entries), so that it is not written
    twice.
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

    A retry (:func:`~gwcelery.tasks.gracedb_client.retrying`) first checks
    whether an earlier try created it before its answer was lost: if the
    latest VOEvent has this type and sky map, its file name is returned.
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
        if not status_is(exc, 400):
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
        if not status_is(exc, 400, SIGNOFF_EXISTS_MESSAGE):
            raise
        log.info('%s was already signed off (%s)', superevent_id,
                 signoff_type)
