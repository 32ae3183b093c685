"""``gwcelery local``: the whole pipeline on one machine."""

import os
import runpy
import socket
import sys
import textwrap
import time
import urllib.error
import urllib.request

import click

from ..util.kafka_broker import KafkaBrokerError
from ..util.pidlock import LOCK_NAME, LockHeld, PidLock
from ..util.redis_server import RedisServer, free_port
from ..util.settings import (
    DEFAULT_LOCAL_DIR,
    LOCAL_CONFIG_MODULE,
    LOCAL_DIR_VARIABLE,
)
from ..util.supervisor import ChildError, StopSignals, Supervisor
from .local_children import (
    HOST,
    WORKERS,
    StatusFile,
    children_row,
    kafka_broker,
    kafka_settings,
    start_children,
)
from .milestones import MilestoneReporter
from .nagios import State, run_checks, worst


def write_config(data_dir, settings):
    """Write the configuration module that every child process loads.

    It starts from the ``local`` preset and sets the addresses of the
    services this deployment started; read it to see what they are.
    """
    lines = [f'{key} = {value!r}' for key, value in sorted(settings.items())]
    path = os.path.join(data_dir, f'{LOCAL_CONFIG_MODULE}.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent('''\
            """Written by ``gwcelery local`` at each start: do not edit."""

            from gwcelery.conf.local import *  # noqa: F403

            '''))
        f.write('\n'.join(lines) + '\n')
    return path


def read_config(data_dir):
    """Return the settings of the configuration module in `data_dir`."""
    path = os.path.join(data_dir, f'{LOCAL_CONFIG_MODULE}.py')
    if not os.path.exists(path):
        raise click.ClickException(
            f'{path} does not exist: no local deployment was started with '
            f'--data-dir {data_dir}')
    return runpy.run_path(path)


def child_environment(data_dir):
    """Environment for the children: the written config module."""
    env = dict(os.environ)
    env['CELERY_CONFIG_MODULE'] = LOCAL_CONFIG_MODULE
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [data_dir, env.get('PYTHONPATH')]))
    env.pop('CELERY_BROKER_URL', None)
    env.pop('CELERY_RESULT_BACKEND', None)
    env.pop('GWCELERY_EAGER', None)
    env['FLOWER_UNAUTHENTICATED_API'] = 'true'
    # One OpenMP thread per core for BAYESTAR; the machine has few.
    env.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
    env.setdefault('MPLBACKEND', 'Agg')
    return env


def port_is_free(port):
    """Whether a TCP port of 127.0.0.1 can be bound right now by a server
    (which, as every server of the deployment does, sets
    ``SO_REUSEADDR``: the connections of a deployment just stopped, in
    TIME_WAIT, must not move its ports at the next start)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def choose_port(name, port, report):
    """Return `port` if it is free, else a free one (and say so)."""
    if port and port_is_free(port):
        return port
    chosen = free_port(HOST)
    if port:
        report(f'port {port} for {name} is in use; using {chosen}')
    return chosen


def http_ok(url, timeout=2.0):
    """Whether `url` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(predicate, timeout, interval=0.2):
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def ping_workers(timeout=1.0):
    """Return the names of the workers answering a ping."""
    from .. import app

    answered = set()
    for reply in app.control.ping(timeout=timeout) or []:
        answered.update(node.split('@')[0] for node in reply)
    return answered


def describe_mock(mock_interval):
    """What the banner says about mock events."""
    if mock_interval is None:
        return 'off'
    return f'a simulated candidate now and every {mock_interval:g} s'


def status_report(settings, data_dir=None):
    """Run the health checks of ``gwcelery nagios`` on the deployment whose
    configuration module defined `settings`, plus whether Flower answers
    and, given its `data_dir`, whether a child is down (a row only then);
    return (part, :class:`~gwcelery.tools.nagios_checks.State`, message)
    for each.
    """
    from .. import app

    app.conf.update({key: value for key, value in settings.items()
                     if key.islower() and not key.startswith('_')})
    rows = [(part, result.state, result.message)
            for part, result in run_checks(app)]
    children = children_row(data_dir, State) if data_dir else None
    if children is not None:
        rows.append(children)
    flower = f'http://{HOST}:{settings["flower_port"]}/'
    if http_ok(flower):
        rows.append(('flower', State.OK, f'Flower {flower} answers'))
    else:
        # The pipeline works without its console: a warning at most.
        rows.append(('flower', State.WARNING,
                     f'Flower {flower} not answering'))
    if 'console_port' not in settings:  # the eager mode starts none
        return rows
    console = f'http://{HOST}:{settings["console_port"]}/'
    if http_ok(console):
        rows.append(('console', State.OK, f'Console {console} answers'))
    else:
        rows.append(('console', State.WARNING,
                     f'Console {console} not answering'))
    return rows


@click.command(name='local')
@click.option('--data-dir', default=DEFAULT_LOCAL_DIR, show_default=True,
              envvar=LOCAL_DIR_VARIABLE, type=click.Path(file_okay=False),
              help='Directory for Redis and GraceDB data, logs and the '
                   'recorded configuration, kept between runs '
                   f'(${LOCAL_DIR_VARIABLE} if set). Celery commands run '
                   'in the same folder, or with the same '
                   f'${LOCAL_DIR_VARIABLE}, reach this deployment.')
@click.option('--mock-interval', default=60.0, show_default=True,
              type=click.FloatRange(min=1),
              help='Seconds between simulated CBC candidates.')
@click.option('--no-mock', is_flag=True, help='Upload no mock events.')
@click.option('--eager', is_flag=True,
              help='Run the pipeline in this one process with '
                   'task_always_eager, no broker (debug mode).')
@click.option('--status', is_flag=True,
              help='Tell which parts of a running deployment with this '
                   '--data-dir are up, and exit.')
@click.option('--redis-port', default=0, show_default=True,
              help='Port of the Redis broker (0: a free one).')
@click.option('--gracedb-port', default=8000, show_default=True,
              help='Port of the local GraceDB server.')
@click.option('--flower-port', default=5555, show_default=True,
              help='Port of the Flower monitoring console.')
@click.option('--console-port', default=5000, show_default=True,
              help='Port of the operator console (gwcelery console).')
@click.option('--gcn-port', default=5341, show_default=True,
              help='Port of the VOEvent broker (GCN receivers connect '
                   'here).')
@click.option('--kafka', is_flag=True,
              help='Also run a Kafka broker (Tansu), its data in '
                   '--data-dir: public alerts go to it as GCN JSON and '
                   'SCiMMA Avro messages, and GraceDB publishes its '
                   'igwn-alert topics there.')
def local(data_dir, mock_interval, no_mock, eager, status, redis_port,
          gracedb_port, flower_port, console_port, gcn_port, kafka=False):
    """Run the whole pipeline on this machine, with mock events.

    Starts, as supervised child processes bound to 127.0.0.1: a Redis
    server, the local GraceDB server, a mock GCN server that sends
    simulated GRB notices, one Celery worker per queue (the
    general one runs the GCN and LVAlert listeners and the VOEvent
    broker), Celery Beat (which also uploads a simulated candidate every
    --mock-interval seconds), Flower, the operator console and, with
    --kafka, a Kafka broker and its storage. Prints where each is, then
    one line per pipeline milestone. A child that dies, a server
    included, is reported and restarted (on the same port), later and
    later if it keeps dying; Ctrl-C stops them all, servers last. State
    in --data-dir survives for the next start.
    """
    data_dir = os.path.abspath(data_dir)
    if status:
        rows = status_report(read_config(data_dir), data_dir)
        for part, state, message in rows:
            click.echo(f'{part:15} {state.name:8} {message}')
        sys.exit(int(worst(state for _, state, _ in rows)))

    def report(message):
        click.echo(f'[local] {message}')

    # From here on SIGTERM stops the deployment as Ctrl-C does: whatever
    # has been started is stopped, at any moment of the start.
    stop_signals = StopSignals().install()
    lock = lock_data_dir(data_dir)
    try:
        log_dir = os.path.join(data_dir, 'logs')
        os.makedirs(log_dir, exist_ok=True)
        gracedb_port = choose_port('gracedb', gracedb_port, report)
        gcn_port = choose_port('voevent broker', gcn_port, report)
        settings = {
            'gracedb_host': f'{HOST}:{gracedb_port}',
            'gracedb_url': f'http://{HOST}:{gracedb_port}/api/',
            'gcn_bind_port': gcn_port,
            'mock_events_interval': None if no_mock else mock_interval,
            'llhoft_glob': os.path.join(data_dir, 'llhoft', '{detector}',
                                        '*.gwf'),
        }
        if no_mock:
            settings['mock_frames_interval'] = None
            settings['mock_grb_interval'] = None
            settings['mock_grb_coincidence_probability'] = 0.0
        if eager:
            from .local_eager import run_eager
            run_eager(data_dir, settings, gracedb_port,
                      settings['mock_events_interval'], report, stop_signals)
        else:
            run_supervised(data_dir, log_dir, settings, redis_port,
                           flower_port, report, stop_signals, console_port,
                           kafka=kafka)
    finally:
        lock.release()


def lock_data_dir(data_dir):
    """Take the lock of `data_dir` (created if need be) and return it, or
    exit with a message if a live deployment holds it."""
    os.makedirs(data_dir, exist_ok=True)
    lock = PidLock(os.path.join(data_dir, LOCK_NAME))
    try:
        return lock.acquire()
    except LockHeld as held:
        holder = 'another process' if held.pid is None else \
            f'process {held.pid}'
        raise click.ClickException(
            f'another gwcelery local ({holder}) is running with --data-dir '
            f'{data_dir}; stop it first or choose another --data-dir'
        ) from None


def start_servers(supervisor, data_dir, log_dir, redis_port, kafka, report,
                  checkpoint):
    """Start Redis and, with `kafka`, the Kafka broker under `supervisor`
    and wait until they answer; return Redis's URL and the settings that
    tell the others where they are."""
    redis_server = RedisServer(port=choose_port('redis', redis_port, report),
                               data_dir=os.path.join(data_dir, 'redis'),
                               persistent=True)
    supervisor.add(redis_server.child(), timeout=30)
    checkpoint()
    settings = {'broker_url': redis_server.url,
                'result_backend': redis_server.url}
    if kafka:
        broker = kafka_broker(data_dir, log_dir,
                              choose_port('kafka', None, report))
        for child in broker.children():
            supervisor.add(child, timeout=30)
            checkpoint()
        settings.update(kafka_settings(broker.url))
    return redis_server.url, settings


def run_supervised(data_dir, log_dir, settings, redis_port, flower_port,
                   report, stop_signals, console_port=None, kafka=False):
    """Start Redis and the supervised children, report milestones until
    interrupted (Ctrl-C, SIGTERM), then stop everything.

    An interrupt at any moment, start-up included, stops what was started
    so far; `stop_signals` is checked at each step, in case Python dropped
    the KeyboardInterrupt.
    """
    checkpoint = stop_signals.raise_if_received
    from .. import app

    supervisor = Supervisor(report=report)
    status_file = StatusFile(data_dir)
    status_file.remove()  # left by a deployment that was killed
    reporter = None
    try:
        redis_url, server_settings = start_servers(
            supervisor, data_dir, log_dir, redis_port, kafka, report,
            checkpoint)
        flower_port = choose_port('flower', flower_port, report)
        console_port = choose_port('console', console_port, report)
        mock_gcn_port = choose_port('mock GCN server', None, report)
        settings = dict(settings, **server_settings,
                        gcn_remote_address=HOST,
                        gcn_remote_port=mock_gcn_port,
                        flower_port=flower_port, console_port=console_port)
        config_path = write_config(data_dir, settings)
        app.conf.update(settings)
        start_children(supervisor, child_environment(data_dir), log_dir,
                       data_dir, settings, checkpoint)
        status_file.update(supervisor)
        reporter = MilestoneReporter(
            redis_url, app.conf.lvalert_redis_channel_prefix, report)
        gracedb_url = settings['gracedb_url']
        wait_until(lambda: checkpoint() or http_ok(gracedb_url), timeout=60)
        up = set()
        wait_until(lambda: checkpoint() or up.update(ping_workers()) or
                   len(up) == len(WORKERS), timeout=90)
        broker = f"{HOST}:{settings['gcn_bind_port']}"
        mock = describe_mock(settings['mock_events_interval'])
        kafka_url = settings.get('igwn_alert_url') if kafka else 'off'
        click.echo(textwrap.dedent(f'''\
            gwcelery local is up
              GraceDB:        {gracedb_url.replace('/api/', '/superevents/')}
              GraceDB API:    {gracedb_url}
              Flower:         http://{HOST}:{flower_port}/
              Console:        http://{HOST}:{console_port}/
              VOEvent broker: {broker} (connect a GCN client here)
              Redis broker:   {redis_url}
              Kafka broker:   {kafka_url}
              Workers:        {', '.join(sorted(up)) or 'none answered yet'}
              Mock events:    {mock}
              Configuration:  {config_path}
              Logs:           {log_dir}/
            Milestones follow. Press Ctrl-C to stop.'''))
        if settings['mock_events_interval'] is not None:
            # Beat's first run comes one interval after it starts: do not
            # make a new user wait that long for something to watch.
            from ..tasks import first2years
            first2years.upload_event.delay()
        supervisor.run_forever(on_tick=lambda: checkpoint() or (
            status_file.update(supervisor), reporter.poll()))
    except KeyboardInterrupt:
        report('Stopping...')
    except (ChildError, KafkaBrokerError) as error:  # a server did not start
        report(f'Stopping: {error}')
        raise click.ClickException(str(error)) from None
    finally:
        supervisor.stop()
        status_file.remove()
        if reporter is not None:
            reporter.close()
