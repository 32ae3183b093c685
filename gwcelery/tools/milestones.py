"""One line per pipeline milestone, read from the alerts GraceDB publishes.

``gwcelery local`` subscribes to the local GraceDB server's alerts (Redis
pub/sub) and prints what each milestone means for a person watching: an
event uploaded, a superevent created, a sky map ready, a notice sent. An
alert that it cannot read (not JSON, nested too deep, not an object...)
is dead-lettered (:mod:`gwcelery.util.dead_letters`) and skipped: it must
never stop ``gwcelery local``.
"""

import json
import logging
import time

import redis

from .. import app
from ..util.alert_stream import next_published
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
    """Subscribe to the alert channels and report each milestone once.

    When Redis goes away (restarted, say), the reporter says so once,
    subscribes again at most every :attr:`reconnect_interval` seconds,
    and says when it is back; the alerts published meanwhile have no
    milestone line (the pipeline handles them from the alert stream).

    Parameters
    ----------
    redis_url : str
        Redis server that the GraceDB server publishes alerts to.
    prefix : str
        Channel prefix of the alerts (``lvalert_redis_channel_prefix``).
    report : callable
        Called with each line.
    letters : DeadLetters, optional
        Where unreadable alerts go; by default the app's dead-letter list
        in the Redis of `redis_url`.
    """

    #: Seconds between two tries to subscribe again.
    reconnect_interval = 1.0

    def __init__(self, redis_url, prefix, report, letters=None):
        self.report = report
        self._pattern = prefix + '*'
        self._client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=10)
        self._pubsub = None
        self._next_try = 0.0
        self._seen = set()
        self._letters = letters or DeadLetters.from_conf(app.conf,
                                                         redis_url)
        self._subscribe()
        if self._pubsub is None:
            raise redis.ConnectionError(f'cannot subscribe to {redis_url}')

    def _subscribe(self):
        """Subscribe anew; return whether it worked."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(self._pattern)
        except redis.RedisError:
            pubsub.close()
            self._next_try = time.monotonic() + self.reconnect_interval
            return False
        self._pubsub = pubsub
        return True

    def _lost(self, exc):
        log.warning('lost the alert subscription (%s); subscribing again '
                    'every %.0f s', exc, self.reconnect_interval)
        self._pubsub.close()
        self._pubsub = None
        self._next_try = time.monotonic() + self.reconnect_interval

    def poll(self):
        """Report the milestones among the alerts waiting; never block
        (but for a moment while subscribing again after an outage)."""
        if self._pubsub is None:
            if time.monotonic() < self._next_try or not self._subscribe():
                return
            log.warning('subscribed to the alerts again')
        while True:
            try:
                message = next_published(self._pubsub, 0)
            except redis.RedisError as exc:
                self._lost(exc)
                return
            if message is None:
                return
            self._report(message)

    def _report(self, message):
        """Report the milestone of one message, if any; dead-letter a
        message that cannot be read."""
        try:
            line = describe_alert(decode_alert(message['data']))
        except Exception as exc:
            self._letters.reject(TRANSPORT, exc, message.get('data'),
                                 channel=message.get('channel'))
            return
        # An event alert goes to two nodes ({group}_{pipeline} and
        # ..._{search}): print it once.
        if line and line not in self._seen:
            self._seen.add(line)
            self.report(line)

    def close(self):
        """Unsubscribe and disconnect."""
        if self._pubsub is not None:
            self._pubsub.close()
        self._client.close()
        self._letters.close()
