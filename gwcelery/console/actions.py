"""The console's decisions, pure functions of what GraceDB holds.

Each form is checked here before anything is sent (:func:`check_preferred`,
:func:`check_update`, :func:`check_retraction`, :func:`check_raven`):
a check returns the reason to refuse, or ``None``. What an action's
outcome looks like in the superevent's log is here too
(:func:`find_outcome`, one :class:`Outcome` per kind of action), so that
:mod:`gwcelery.console.runner` only dispatches and polls.
"""

import dataclasses
import re

from ..tasks import alerts, lifecycle_plan, raven_rules

#: Superevent ids of each category (``S``, ``TS``, ``MS``).
SUPEREVENT_ID = re.compile(r'[TM]?S\d{6}[a-z]+')


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an action ended with: ``state`` is ``'done'``, ``'refused'``
    (the pipeline decided not to, and said why in the log) or
    ``'failed'``; ``entry`` the GraceDB log entry that tells."""

    state: str
    entry: dict | None = None
    message: str = ''


def is_superevent_id(text):
    """Whether ``text`` is a well-formed superevent id."""
    return SUPEREVENT_ID.fullmatch(text or '') is not None


def operator_message(action, user, details):
    """The superevent log line written for an operator's action."""
    return f'Operator console: {user} asked for {action} ({details})'


def skymap_versions(log_entries):
    """Every version (``name,N``) of every sky map file in a log, latest
    first."""
    return [f"{entry['filename']},{entry['file_version']}"
            for entry in reversed(log_entries)
            if (entry.get('filename') or '').endswith(
                lifecycle_plan.FITS_SUFFIXES)
            and entry.get('file_version') is not None]


def product_versions(log_entries, suffix):
    """Every version of every file whose name ends with ``suffix``,
    latest first."""
    return [f"{entry['filename']},{entry['file_version']}"
            for entry in reversed(log_entries)
            if (entry.get('filename') or '').endswith(suffix)
            and entry.get('file_version') is not None]


def file_names(log_entries):
    """Every versioned file name of a log, latest first (type-ahead)."""
    return product_versions(log_entries, '')


def check_preferred(superevent, graceid):
    """Why ``graceid`` cannot become the superevent's preferred event, or
    ``None``."""
    if not graceid:
        return 'choose an event'
    if graceid not in superevent.get('gw_events', ()):
        return f'{graceid} is not an event of {superevent["superevent_id"]}'
    if graceid == superevent['preferred_event']:
        return f'{graceid} is already the preferred event'
    return None


def check_update(log_entries, names):
    """Why an Update with ``names`` (sky map, source properties,
    classification; empty for the latest) cannot be asked for, or
    ``None``. The sky map must be a FITS file of the log."""
    skymap = names[0]
    if skymap and not skymap.split(',')[0].endswith(
            lifecycle_plan.FITS_SUFFIXES):
        return f'{skymap} is not a sky map (FITS) file'
    for name in names:
        if name and lifecycle_plan.resolve_filename(name, log_entries) is None:
            return f'the superevent has no file {name}'
    if not skymap and lifecycle_plan.latest_products(log_entries)[0] is None:
        return 'the superevent has no sky map'
    return None


def check_retraction(superevent_id, confirmation):
    """Why a Retraction form may not go on, or ``None``: the operator
    must type the superevent id to confirm."""
    if (confirmation or '').strip() != superevent_id:
        return (f'not confirmed: type {superevent_id} in the confirmation '
                'box to send the Retraction')
    return None


def check_raven(superevent, external):
    """Why ``RAVEN_ALERT`` cannot be applied to the superevent and the
    ``external`` event (a dict, or ``None`` if it does not exist), or
    ``None``."""
    if external is None:
        return 'no such external event'
    if external.get('group') != 'External':
        return f'{external["graceid"]} is not an External event'
    if (raven_rules.RAVEN_ALERT in superevent['labels']
            and raven_rules.RAVEN_ALERT in external.get('labels', ())):
        return f'both already carry {raven_rules.RAVEN_ALERT}'
    return None


def _sent(entry, alert_type):
    return (entry.get('comment') == alerts.SENT_COMMENT
            and (entry.get('filename') or '').endswith(f'-{alert_type}.xml'))


def _comment_has(entry, *texts):
    comment = entry.get('comment') or ''
    return all(text in comment for text in texts)


def _notice_outcome(entry, alert_type, *refusals):
    if _sent(entry, alert_type):
        return Outcome('done', entry, f'{alert_type} notice sent: '
                       f'{entry["filename"]}')
    if any(_comment_has(entry, *refusal) for refusal in refusals):
        return Outcome('refused', entry, entry['comment'])
    return None


def _preferred_outcome(entry, graceid):
    if _comment_has(entry, 'Updated superevent parameters',
                    'preferred_event', f'-> {graceid}'):
        return Outcome('done', entry, f'preferred event is now {graceid}')
    return None


def _label_outcome(entry, label):
    if entry.get('comment') == f'Added label: {label}':
        return Outcome('done', entry, f'{label} applied')
    return None


def outcome_of(action, entry, argument=None):
    """The :class:`Outcome` that log ``entry`` tells for ``action``
    (``argument``: the new preferred event), or ``None``."""
    if action == 'preliminary':
        return _notice_outcome(entry, 'Preliminary',
                               ('Blocking automated Preliminary notice',))
    if action == 'update':
        return _notice_outcome(entry, 'Update', ('No Update notice sent',))
    if action == 'retraction':
        return _notice_outcome(entry, 'Retraction',
                               ('no notice sent, because',),
                               ('Retraction notice', 'not sent'))
    if action == 'preferred':
        return _preferred_outcome(entry, argument)
    if action == 'raven':
        return _label_outcome(entry, raven_rules.RAVEN_ALERT)
    raise ValueError(f'unknown action {action!r}')


def find_outcome(action, log_entries, after, argument=None):
    """The first :class:`Outcome` of ``action`` among the log entries
    numbered above ``after``, or ``None`` if none tells yet."""
    for entry in log_entries:
        if entry.get('N', 0) > after:
            outcome = outcome_of(action, entry, argument)
            if outcome is not None:
                return outcome
    return None


def last_number(log_entries):
    """The number of the last log entry (0 for an empty log)."""
    return max((entry.get('N', 0) for entry in log_entries), default=0)
