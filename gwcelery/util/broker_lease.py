"""Leases on the messages a worker holds, so that a dead worker's messages
come back in seconds, not after an hour.

With the Redis transport, a message that a worker has taken but not yet
acknowledged (a task with ``acks_late`` that runs, a task waiting for its
countdown or ETA) sits in the ``unacked`` hash, with the time it was
taken in the ``unacked_index`` sorted set. Any consumer puts back in its
queue every message older than ``visibility_timeout`` (kombu's periodic
``restore_visible``). That timeout must be short for a dead worker's
messages to return quickly, yet a live worker's messages must never be
taken from it, however long its task runs or its countdown waits.

So the time in ``unacked_index`` is a lease: :class:`MessageLeases`, a
consumer boot step, starts a thread in the worker's main process that
stamps the current time on every message the worker still holds, every
:obj:`~gwcelery.conf.broker_lease_renew_interval` seconds. A worker that
is killed, frozen or cut off from Redis stops renewing, and its messages
go back to their queues ``visibility_timeout`` seconds after its last
renewal. A thread rather than a timer of the worker's event loop: a worker
with the solo pool runs its task in the loop's own thread, which would
starve the renewal.
"""

import logging
import threading
import time

import redis
from celery import bootsteps
from celery.worker import state as worker_state

log = logging.getLogger(__name__)


def held_tags(consumer):
    """The delivery tags of the messages that the worker of `consumer` (a
    Celery worker consumer) holds unacknowledged: those on its current
    channel, and those of its tasks that run, wait for a process or wait
    for their countdown, which may have come on an earlier connection
    (they are acknowledged when they end, see
    :mod:`gwcelery.util.broker_transport`)."""
    tags = set()
    task_consumer = getattr(consumer, 'task_consumer', None)
    qos = getattr(getattr(task_consumer, 'channel', None), 'qos', None)
    delivered = getattr(qos, '_delivered', None) or {}
    held = (worker_state.active_requests, worker_state.reserved_requests,
            worker_state.scheduled_requests)
    # The worker's event loop adds and removes entries meanwhile; a copy
    # taken while it did so is taken again.
    for _ in range(3):
        try:
            tags.update(tag for tag in list(delivered)
                        if tag not in qos._dirty)
            for requests in held:
                tags.update(request.message.delivery_tag
                            for request in list(requests)
                            if not request.acknowledged)
            return tags
        except RuntimeError:
            continue
    return tags


def renew(client, index_key, tags, now=None):
    """Stamp `now` on the `tags` still in the sorted set `index_key`.

    ``XX``: a tag that was acknowledged or already restored meanwhile is
    not added back, so a renewal never resurrects a message. Returns the
    number of tags renewed.
    """
    if not tags:
        return 0
    now = time.time() if now is None else now
    client.zadd(index_key, {tag: now for tag in tags}, xx=True, ch=True)
    return len(tags)


def index_key(conf):
    """The Redis key of kombu's ``unacked_index`` for the app's settings."""
    options = conf.broker_transport_options or {}
    return (options.get('global_keyprefix', '')
            + options.get('unacked_index_key', 'unacked_index'))


class LeaseRenewer(threading.Thread):
    """The thread that renews the leases of a consumer's messages."""

    def __init__(self, consumer, url, key, interval):
        super().__init__(name='gwcelery-lease-renewer', daemon=True)
        self.consumer = consumer
        self.key = key
        self.interval = interval
        self.client = redis.Redis.from_url(
            url, socket_timeout=interval, socket_connect_timeout=interval)
        self.stopped = threading.Event()
        self._failing = False

    def run(self):
        while not self.stopped.wait(self.interval):
            self.renew_once()

    def renew_once(self):
        """Renew once; log the first failure of a series and the
        recovery, not every failed try."""
        try:
            renew(self.client, self.key, held_tags(self.consumer))
        except redis.RedisError as exc:
            if not self._failing:
                log.warning('cannot renew the leases of the held messages '
                            '(%s); they return to their queues if this '
                            'lasts', exc)
            self._failing = True
        else:
            if self._failing:
                log.info('renewing the leases of the held messages again')
            self._failing = False

    def stop(self):
        self.stopped.set()
        self.client.close()


class MessageLeases(bootsteps.StartStopStep):
    """Consumer boot step: renew the leases of the held messages (see the
    module docstring). Redis brokers only."""

    requires = {'celery.worker.consumer.tasks:Tasks'}

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.renewer = None

    def start(self, consumer):
        conf = consumer.app.conf
        url = conf.broker_url or ''
        if self.renewer is not None or not url.startswith(('redis', 'unix')):
            return  # already renewing across a reconnection, or not Redis
        self.renewer = LeaseRenewer(consumer, url, index_key(conf),
                                    conf['broker_lease_renew_interval'])
        self.renewer.start()

    def shutdown(self, consumer):
        if self.renewer is not None:
            self.renewer.stop()
            self.renewer = None
