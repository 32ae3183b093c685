"""``gwcelery nagios``: a health check for Nagios, Icinga and the like.

Prints one status line in the Nagios plugin convention (``NAGIOS STATE:
text | perfdata``) and exits with the state's code: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN. Each check is a function returning a
:class:`Result` (:mod:`gwcelery.tools.nagios_checks`); :func:`run_checks`
runs them all in threads with short
time-outs and :func:`combine` keeps the worst state. ``gwcelery local
--status`` shows the same checks, one line each.
"""

import threading
import time
from functools import partial

import click

from .nagios_checks import (
    Result,
    State,
    check_broker,
    check_dead_letters,
    check_gracedb,
    check_listener,
    check_queue_lengths,
    check_voevent_broker,
    check_workers,
    worst,
)

#: The eternal listeners whose loops must be alive.
LISTENERS = ('gwcelery.tasks.gcn.listen', 'gwcelery.tasks.gcn.broker',
             'gwcelery.tasks.lvalert.listen')

#: Settings that the command line may override, and their options.
LIMITS = {
    'nagios_queue_length_warning': 'queue_warning',
    'nagios_queue_length_critical': 'queue_critical',
    'nagios_heartbeat_warning_age': 'heartbeat_warning',
    'nagios_heartbeat_critical_age': 'heartbeat_critical',
}


class _Check(threading.Thread):
    """One check running in a daemon thread, so that a hung one cannot
    hold up the status line (nor the exit of the process)."""

    def __init__(self, name, function):
        super().__init__(name=f'check {name}', daemon=True)
        self.check_name = name
        self.function = function
        self.result = None
        self.started = time.monotonic()
        self.start()

    def run(self):
        try:
            self.result = self.function()
        except Exception as exc:  # a bug or an unforeseen failure
            self.result = Result(
                State.UNKNOWN, f'{self.check_name}: check failed: '
                               f'{type(exc).__name__}: {exc}')

    def outcome(self, limit):
        """The check's result, waiting until `limit` s after its start."""
        self.join(max(0.0, self.started + limit - time.monotonic()))
        if self.result is None:
            return Result(State.UNKNOWN, f'{self.check_name}: no result '
                                         f'within {limit:g} s')
        return self.result


def run_checks(app, **limits):
    """Run every check with the configuration of `app`; return a list of
    (name, :class:`Result`) in a fixed order.

    `limits` overrides the thresholds (settings ``nagios_*``). The broker
    is checked first; the checks that need it (workers, queues, and the
    listeners when their locks live in the broker's Redis) are skipped,
    as UNKNOWN, when it does not answer.
    """
    conf = app.conf
    settings = {key: conf[key] for key in LIMITS}
    settings.update(limits)
    timeout = float(conf['nagios_timeout'])
    limit = 2 * timeout + 1
    queues = [queue.name for queue in conf.task_queues]
    broker_url = conf.broker_url

    independent = {
        'voevent broker': partial(
            check_voevent_broker, conf['gcn_bind_address'],
            int(conf['gcn_bind_port']), conf['gcn_broker_accept_addresses'],
            timeout),
        'gracedb': partial(check_gracedb, conf['gracedb_url'], timeout),
    }
    dependent = {
        'workers': partial(check_workers, app, queues, timeout),
        'queues': partial(
            check_queue_lengths, broker_url, queues,
            conf.broker_transport_options or {},
            settings['nagios_queue_length_warning'],
            settings['nagios_queue_length_critical'], timeout),
        'dead letters': partial(
            check_dead_letters, broker_url, conf['dead_letter_key'],
            float(conf['dead_letter_warning_age']), timeout),
    }
    for task_name in LISTENERS:
        task = app.tasks[task_name]
        check = partial(check_listener, task,
                        float(settings['nagios_heartbeat_warning_age']),
                        float(settings['nagios_heartbeat_critical_age']),
                        timeout)
        needs_broker = task.singleton_config.backend_url == broker_url
        (dependent if needs_broker else independent)[
            task_name.removeprefix('gwcelery.tasks.')] = check

    running = {name: _Check(name, check)
               for name, check in independent.items()}
    broker = _Check('broker', partial(check_broker, broker_url, timeout))
    outcomes = {'broker': broker.outcome(limit)}
    if outcomes['broker'].state is State.OK:
        running.update((name, _Check(name, check))
                       for name, check in dependent.items())
    else:
        outcomes.update(
            (name, Result(State.UNKNOWN, f'{name}: not checked (the '
                                         f'broker does not answer)',
                          skipped=True))
            for name in dependent)
    for name, check in running.items():
        outcomes[name] = check.outcome(limit)
    order = ['broker', 'workers', 'queues', 'dead letters',
             *(name.removeprefix('gwcelery.tasks.') for name in LISTENERS),
             'voevent broker', 'gracedb']
    return [(name, outcomes[name]) for name in order]


def combine(results):
    """The overall state and the Nagios status line of `results`, a list
    of (name, :class:`Result`): the worst state wins; the text gives the
    problems, worst first (or the names of the checks, if all are OK),
    and the performance data follows ``|``."""
    state = worst(result.state for _, result in results)
    if state is State.OK:
        text = ', '.join(name for name, _ in results) + ' OK'
    else:
        problems = sorted((result for _, result in results
                           if result.state is not State.OK
                           and not result.skipped),
                          key=lambda result: -result.state.severity)
        text = '; '.join(result.message for result in problems)
        skipped = sum(result.skipped for _, result in results)
        if skipped:
            text += f'; {skipped} checks skipped'
    perfdata = ' '.join(item for _, result in results
                        for item in result.perfdata)
    line = f'NAGIOS {state.name}: {text}'.replace('\n', ' ').replace('|', '/')
    return state, f'{line} | {perfdata}' if perfdata else line


@click.command(name='nagios')
@click.option('--verbose', '-v', is_flag=True,
              help='After the status line, print one line per check.')
@click.option('--queue-warning', type=click.IntRange(min=0),
              help='WARNING above this many waiting messages in a queue '
                   '[default: nagios_queue_length_warning].')
@click.option('--queue-critical', type=click.IntRange(min=0),
              help='CRITICAL above this many waiting messages in a queue '
                   '[default: nagios_queue_length_critical].')
@click.option('--heartbeat-warning', type=click.FloatRange(min=0),
              help="WARNING when a listener's last heartbeat is older "
                   '(s) [default: nagios_heartbeat_warning_age].')
@click.option('--heartbeat-critical', type=click.FloatRange(min=0),
              help="CRITICAL when a listener's last heartbeat is older "
                   '(s) [default: nagios_heartbeat_critical_age].')
@click.pass_context
def nagios(ctx, verbose, **options):
    """Check the pipeline's health for Nagios/Icinga: print one status line
    and exit 0 (OK), 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN).

    Checks that the broker answers, that each queue has a live worker, that
    the eternal listeners run and their loops beat recently, that the
    VOEvent broker accepts a connection, that GraceDB answers, that no
    queue is too long and that no listener dead-lettered a message lately.
    Uses the configuration of the app (the preset named by
    CELERY_CONFIG_MODULE).
    """
    limits = {setting: options[option] for setting, option in LIMITS.items()
              if options[option] is not None}
    results = []
    try:
        results = run_checks(ctx.obj.app, **limits)
        state, line = combine(results)
    except Exception as exc:  # the plugin must still print one line
        state = State.UNKNOWN
        line = f'NAGIOS UNKNOWN: {type(exc).__name__}: {exc}'.replace(
            '\n', ' ')
    click.echo(line)
    if verbose:
        for name, result in results:
            click.echo(f'{name:15} {result.state.name:8} {result.message}')
    ctx.exit(int(state))
