"""One line per pipeline milestone, read from the alerts GraceDB publishes.

``gwcelery local`` reads the local GraceDB server's alerts (the Redis
alert stream) and prints what each milestone means for a person watching: an
event uploaded, a superevent created, a sky map ready, a notice sent. An
alert that it cannot read (not JSON, nested too deep, not an object...)
is dead-lettered (:mod:`gwcelery.util.dead_letters`) and skipped: it must
never stop ``gwcelery local``.
"""

import json
import logging

import redis

from .. import app
from ..util.alert_stream import AlertStream
from ..util.dead_letters import DeadLetters, Rejected

log = logging.getLogger(__name__)

#: Superevent labels worth a line, and what to say of them.
SUPEREVENT_LABELS = {
    'EM_READY': 'preferred event complete (EM_READY)',
    'SKYMAP_READY': 'sky map ready',
    'EMBRIGHT_READY': 'source classification ready',
    'PASTRO_READY': 'p_astro ready',
    'GCN_PRELIM_SENT': 'preliminary notice sent to GCN (GCN_PRELIM_SENT)',
    'EM_COINC': 'coincident with an external trigger (EM_COINC)',
    'RAVEN_ALERT': 'coincidence passes the RAVEN alert threshold',
    'ADVREQ': 'rapid-response sign-off requested (ADVREQ)',
    'ADVOK': 'signed off OK (ADVOK)',
    'ADVNO': 'signed off NO (ADVNO)',
}

#: Comment of the log entry that uploads a notice sent to GCN
#: (:data:`gwcelery.tasks.alerts.SENT_COMMENT`).
SENT_COMMENT = 'VOEvent sent to GCN'

#: Event labels worth a line.
EVENT_LABELS = {
    'SKYMAP_READY': 'sky map ready',
    'EMBRIGHT_READY': 'em_bright ready',
    'PASTRO_READY': 'p_astro ready',
}


#: GraceDB's VOEvent type codes.
VOEVENT_TYPES = {'EW': 'early warning', 'PR': 'preliminary',
                 'IN': 'initial', 'UP': 'update', 'RE': 'retraction'}


#: Name of the reader in the log and the dead letters.
TRANSPORT = 'milestones'


def decode_alert(data):
    """The alert (a dict) of a message's data; raise :exc:`Rejected` with
    the reason for anything else."""
    try:
        alert = json.loads(data)
    except Exception as exc:
        # Any: RecursionError (nested deeper than the parser goes),
        # UnicodeDecodeError, MemoryError...
        raise Rejected(f'an alert that is not JSON ({type(exc).__name__}: '
                       f'{exc})') from None
    if not isinstance(alert, dict):
        raise Rejected(f'an alert that is a JSON {type(alert).__name__}, '
                       'not an object')
    return alert


def _format_far(far):
    return 'no FAR' if far is None else f'FAR {far:.3g} Hz'


def describe_alert(alert):
    """Return a one-line description of a milestone, or None.

    Parameters
    ----------
    alert : dict
        A decoded LVAlert message (``uid``, ``alert_type``, ``data``,
        ``object``).
    """
    uid = alert.get('uid')
    kind = alert.get('alert_type')
    data = alert.get('data') or {}
    obj = alert.get('object') or {}
    is_superevent = 'superevent_id' in obj
    if kind == 'new' and is_superevent:
        return (f'superevent {uid} created, preferred event '
                f'{obj.get("preferred_event")}, {_format_far(obj.get("far"))}')
    if kind == 'new':
        if obj.get('group') == 'External':
            return (f'external trigger {uid} from {obj.get("pipeline")} '
                    f'({obj.get("search")}) at GPS {obj.get("gpstime")}')
        return (f'event {uid} uploaded by {obj.get("pipeline")}, '
                f'{_format_far(obj.get("far"))}, GPS {obj.get("gpstime")}')
    if kind == 'label_added':
        labels = SUPEREVENT_LABELS if is_superevent else EVENT_LABELS
        what = labels.get(data.get('name'))
        return f'{uid}: {what}' if what else None
    if kind == 'voevent' and is_superevent:
        notice = VOEVENT_TYPES.get(data.get('voevent_type'), 'new')
        return f'{uid}: {notice} VOEvent {data.get("filename")} registered'
    filename = data.get('filename') or ''
    if (kind == 'log' and is_superevent
            and data.get('comment') == SENT_COMMENT
            and filename.endswith('.xml')):
        alert_type = filename[:-len('.xml')].rsplit('-', 1)[-1]
        return f'{uid}: {alert_type} sent ({filename})'
    if kind == 'event_added' and is_superevent:
        return f'{uid}: events now {", ".join(obj.get("gw_events", []))}'
    if kind == 'log' and is_superevent and \
            data.get('filename', '').endswith('.png'):
        return f'{uid}: plot {data["filename"]} uploaded'
    return None


class MilestoneReporter:
    """Read the alert stream and report each milestone once.

    It reads the stream that the local GraceDB server appends every alert
    to (:class:`~gwcelery.util.alert_stream.AlertStream`), from its end
    at start and then with a cursor of its own, so that no alert is
    missed between two polls, however many come at once (a pub/sub
    subscriber that falls behind is dropped by Redis) or while Redis
    restarts: then it says once that it cannot read, and once that it
    can again.

    Parameters
    ----------
    redis_url : str
        Redis server that the GraceDB server publishes alerts to.
    prefix : str
        Prefix of the alert stream (``lvalert_redis_channel_prefix``).
    report : callable
        Called with each line.
    letters : DeadLetters, optional
        Where unreadable alerts go; by default the app's dead-letter list
        in the Redis of `redis_url`.
    """

    #: Most entries read at one poll, so that a poll stays short.
    max_entries_per_poll = 2000

    def __init__(self, redis_url, prefix, report, letters=None):
        self.report = report
        self._client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=10)
        self._stream = AlertStream(self._client, prefix)
        last = self._client.xrevrange(self._stream.key, count=1)
        self._cursor = last[0][0].decode() if last else '0-0'
        self._failing = False
        self._seen = set()
        self._letters = letters or DeadLetters.from_conf(app.conf,
                                                         redis_url)

    def poll(self):
        """Report the milestones among the alerts appended since the last
        poll; never block."""
        for _ in range(max(1, self.max_entries_per_poll // 100)):
            try:
                entries = self._stream.read_after(self._cursor)
            except redis.RedisError as exc:
                if not self._failing:
                    log.warning('cannot read the alert stream (%s); will '
                                'try again', exc)
                self._failing = True
                return
            if self._failing:
                log.warning('reading the alert stream again')
                self._failing = False
            for entry_id, node, message in entries:
                self._report(node, message)
                self._cursor = entry_id
            if not entries:
                return

    def _report(self, node, message):
        """Report the milestone of one alert, if any; dead-letter one that
        cannot be read."""
        try:
            if message is None:
                raise Rejected('a stream entry without a message')
            line = describe_alert(decode_alert(message))
        except Exception as exc:
            self._letters.reject(TRANSPORT, exc, message, node=node)
            return
        # An event alert goes to two nodes ({group}_{pipeline} and
        # ..._{search}): print it once.
        if line and line not in self._seen:
            self._seen.add(line)
            self.report(line)

    def close(self):
        """Disconnect."""
        self._client.close()
        self._letters.close()
