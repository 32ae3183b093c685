"""``gwcelery local``: the whole pipeline on one machine."""

import os
import sys
import textwrap
import time

import click

from ..util.redis_server import RedisServer
from ..util.supervisor import Child, Supervisor

#: Name of the configuration module written into the data directory.
CONFIG_MODULE = 'gwcelery_local_config'

#: Worker processes of a full deployment: (name, queue, extra arguments).
WORKERS = (
    ('celery', 'celery', ['--concurrency', '4']),
    ('openmp', 'openmp', ['--concurrency', '1']),
    ('superevent', 'superevent', ['--concurrency', '1']),
    ('exttrig', 'exttrig', ['--concurrency', '1']),
)


def write_config(data_dir, settings):
    """Write the configuration module that every child process loads.

    It starts from the ``local`` preset and sets the addresses of the
    services this deployment started; read it to see what they are.
    """
    lines = [f'{key} = {value!r}' for key, value in sorted(settings.items())]
    path = os.path.join(data_dir, f'{CONFIG_MODULE}.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent('''\
            """Written by ``gwcelery local`` at each start: do not edit."""

            from gwcelery.conf.local import *  # noqa: F403

            '''))
        f.write('\n'.join(lines) + '\n')
    return path


def child_environment(data_dir):
    """Environment for the children: the written config module."""
    env = dict(os.environ)
    env['CELERY_CONFIG_MODULE'] = CONFIG_MODULE
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [data_dir, env.get('PYTHONPATH')]))
    env.pop('CELERY_BROKER_URL', None)
    env.pop('CELERY_RESULT_BACKEND', None)
    env['FLOWER_UNAUTHENTICATED_API'] = 'true'
    return env


def celery_command(*args):
    """Command line running ``gwcelery ARGS`` with this interpreter."""
    return [sys.executable, '-m', 'gwcelery', *args]


def wait_for_workers(broker_url, names, timeout):
    """Wait until the named workers answer a ping; return those that did."""
    from .. import app

    app.conf.broker_url = broker_url
    deadline = time.monotonic() + timeout
    answered = set()
    while time.monotonic() < deadline and answered != set(names):
        for reply in app.control.ping(timeout=1.0) or []:
            answered.update(node.split('@')[0] for node in reply)
    return answered


@click.command(name='local')
@click.option('--data-dir', default='gwcelery-local', show_default=True,
              type=click.Path(file_okay=False),
              help='Directory for Redis data, logs and configuration.')
@click.option('--redis-port', default=6379, show_default=True,
              help='Port of the Redis broker (0 picks a free one).')
@click.option('--flower-port', default=5555, show_default=True,
              help='Port of the Flower monitoring console.')
def local(data_dir, redis_port, flower_port):
    """Run the whole pipeline on this machine.

    Starts a Redis server, one Celery worker per queue, Celery Beat and
    Flower as child processes, all bound to 127.0.0.1; restarts any that
    dies; Ctrl-C stops them all. State in --data-dir survives restarts.
    """
    data_dir = os.path.abspath(data_dir)
    log_dir = os.path.join(data_dir, 'logs')
    os.makedirs(log_dir, exist_ok=True)

    redis_server = RedisServer(port=redis_port or None,
                               data_dir=os.path.join(data_dir, 'redis'),
                               persistent=True)
    redis_server.start()
    settings = {'broker_url': redis_server.url,
                'result_backend': redis_server.url}
    config_path = write_config(data_dir, settings)
    env = child_environment(data_dir)

    supervisor = Supervisor(report=lambda msg: click.echo(f'[local] {msg}'))

    def add(name, argv):
        supervisor.add(Child(name, argv, env,
                             os.path.join(log_dir, f'{name}.log')))

    for name, queue, extra in WORKERS:
        add(f'worker-{name}', celery_command(
            'worker', '--hostname', f'{name}@%h', '--queues', queue,
            '--loglevel', 'INFO', '--events', *extra))
    add('beat', celery_command(
        'beat', '--loglevel', 'INFO',
        '--schedule', os.path.join(data_dir, 'celerybeat-schedule')))
    add('flower', celery_command(
        'flower', '--address=127.0.0.1', f'--port={flower_port}'))

    worker_names = [name for name, _, _ in WORKERS]
    up = wait_for_workers(redis_server.url, worker_names, timeout=60)
    click.echo(textwrap.dedent(f'''\
        gwcelery local is up
          Redis broker:  {redis_server.url}
          Workers:       {', '.join(sorted(up)) or 'none answered yet'}
          Beat:          running
          Flower:        http://127.0.0.1:{flower_port}/
          Configuration: {config_path}
          Logs:          {log_dir}/
        Press Ctrl-C to stop.'''))
    try:
        supervisor.run_forever()
    finally:
        redis_server.stop()
