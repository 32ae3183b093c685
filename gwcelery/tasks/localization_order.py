"""The order of the localisations on the ``openmp`` queue: the sky map
an alert needs first.

BAYESTAR runs for every CBC event of a superevent, one at a time on the
openmp worker, but only the preferred event's sky map goes into the
alert. The Redis transport orders each queue by message priority (a list
per step of ``broker_transport_options['priority_steps']``, the lowest
number first) and the workers take a message only when a process is free
(:obj:`~gwcelery.conf.worker_disable_prefetch`), so the order is decided
when the worker is ready for the next localisation, not earlier.

Every localisation is sent at :data:`ALERT_PRIORITY`: when it is sent,
its event may not have joined its superevent yet. When it starts with
other alert-priority localisations waiting behind it, the localisation
(:func:`gwcelery.tasks.localization.localize`) looks again
(:func:`should_wait`; :func:`can_become_preferred` applies the superevent
manager's own ranking); one whose event cannot become preferred goes back
to the queue at :data:`RECORD_PRIORITY`, behind the localisations that
alerts need, and runs later for the record. The worker then takes the next
alert-priority localisation. Nothing is ever skipped.
"""

import importlib

import redis
from celery.signals import worker_process_init
from celery.utils.log import get_task_logger

from .. import app
from . import gracedb
from .superevent_rules import ranking_key

log = get_task_logger(__name__)

#: Priority of a localisation that an alert may need (Redis transport:
#: the lowest number goes first; also that of messages without one).
ALERT_PRIORITY = 0

#: Priority of a localisation that no alert will use: after the alerts'
#: localisations and their volume plots, before the omega scans (9).
RECORD_PRIORITY = 6


#: Modules that a localisation imports: loading them costs about a second,
#: which the first localisation of a new openmp worker process would
#: otherwise add to its alert.
BAYESTAR_MODULES = ('ligo.skymap.bayestar', 'ligo.skymap.io.events.ligolw',
                    'ligo.skymap.io.events.detector_disabled',
                    'ligo.skymap.io.fits')


@worker_process_init.connect(weak=False)
def import_bayestar_early(**kwargs):
    """In a pool process of a worker that consumes ``openmp``, import
    BAYESTAR's modules before the first task (after the fork, so that no
    OpenMP state crosses it)."""
    if 'openmp' in (app.amqp.queues.consume_from or {}):
        for name in BAYESTAR_MODULES:
            importlib.import_module(name)
        log.info('openmp worker process: BAYESTAR imported')


def can_become_preferred(event, superevent, others=()):
    """Whether ``event`` is, or once localised could be, the preferred
    event of ``superevent`` (``None`` if it is in none yet: it may start
    its own), whose other events are ``others``.

    The superevent manager's ranking
    (:func:`gwcelery.tasks.superevent_rules.ranking_key`) decides, leaving out
    its first criterion, completeness: the event will be complete once
    its sky map is there, and so will a louder event still waiting for
    its own. A tie counts as a possible preferred event.
    """
    if superevent is None or superevent['preferred_event'] == event['graceid']:
        return True
    rank = ranking_key(event)[1:]
    return all(rank >= ranking_key(other)[1:]
               for other in (superevent['preferred_event_data'], *others))


def alert_localizations_waiting(queue='openmp'):
    """How many alert-priority messages wait in ``queue`` (the Redis
    transport keeps priority 0 in the list named after the queue)."""
    client = redis.Redis.from_url(app.conf.broker_url,
                                  socket_connect_timeout=5)
    try:
        return client.llen(queue)
    finally:
        client.close()


def _superevent_of(graceid):
    """The event ``graceid``, its superevent (or ``None``) and the
    superevent's other events but the preferred one."""
    event = gracedb.get_event(graceid)
    superevent_id = event.get('superevent')
    if not superevent_id:
        return event, None, []
    superevent = gracedb.get_superevent(superevent_id)
    others = [gracedb.get_event(other)
              for other in superevent.get('gw_events', ())
              if other not in (graceid, superevent['preferred_event'])]
    return event, superevent, others


def should_wait(task, graceid):
    """Whether the localisation of ``graceid`` that ``task`` (bound) is
    running should go back to the queue at :data:`RECORD_PRIORITY`: it is
    a first try at the alert priority, other alert-priority localisations
    wait, and its event cannot become preferred."""
    priority = (task.request.delivery_info or {}).get('priority')
    if (app.conf.task_always_eager or task.request.retries
            or priority not in (None, ALERT_PRIORITY)
            or not alert_localizations_waiting()):
        return False
    event, superevent, others = _superevent_of(graceid)
    if can_become_preferred(event, superevent, others):
        return False
    log.info('%s cannot become the preferred event of %s (%s is): '
             'localising it after the alerts\' sky maps', graceid,
             superevent['superevent_id'], superevent['preferred_event'])
    return True
