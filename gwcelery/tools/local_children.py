"""The supervised children of ``gwcelery local``, and what
``gwcelery local --status`` says of them.

Every long-lived process of the deployment is a
:class:`~gwcelery.util.supervisor.Child` of one
:class:`~gwcelery.util.supervisor.Supervisor`, servers included: Redis,
the Kafka broker and its storage server (``--kafka``), the GraceDB
server, the mock GCN server, the workers, Beat, Flower and the console.
Any of them that exits is reported and restarted the same way, servers
on the same port and with the same data.

While it runs, the supervisor keeps the state of its children in
``DATA_DIR/children.json``, which ``--status`` reads.
"""

import json
import os
import sys
import time

from ..util.kafka_broker import KafkaBroker
from ..util.pidlock import LOCK_NAME, held_by
from ..util.supervisor import Child

#: Worker processes of a full deployment: (name, queue, extra arguments).
#: The general worker runs the three eternal listeners, each holding a pool
#: process for ever; the five others leave a free process for each of the
#: four tasks that a preliminary alert runs at once (with three free
#: processes, the last ones waited 30--50 ms), as in production
#: (``condor/gwcelery.sub``). The serial workers run
#: their tasks in the worker process itself (``--pool solo``): handing
#: each task to a pool process would cost the superevent manager a third
#: of its time per event.
WORKERS = (
    ('celery', 'celery', ['--concurrency', '8']),
    ('openmp', 'openmp', ['--concurrency', '1']),
    ('superevent', 'superevent', ['--pool', 'solo', '--concurrency', '1']),
    ('exttrig', 'exttrig', ['--pool', 'solo', '--concurrency', '1']),
)

HOST = '127.0.0.1'

#: File of the children's state, in the data directory.
STATUS_NAME = 'children.json'


def celery_command(*args):
    """Command line running ``gwcelery ARGS`` with this interpreter."""
    return [sys.executable, '-m', 'gwcelery', *args]


def kafka_broker(data_dir, log_dir, port):
    """The Kafka broker of a deployment: its topics, messages and offsets
    in ``DATA_DIR/kafka``, where they survive restarts."""
    return KafkaBroker(port=port, data_dir=os.path.join(data_dir, 'kafka'),
                       durable=True, log_dir=log_dir)


def kafka_settings(url):
    """Settings of ``gwcelery local --kafka`` for the broker at `url`:
    alerts to topics ``igwn.gwalert`` (GCN's JSON) and
    ``igwn.gwalert-avro`` (SCiMMA's Avro); GraceDB's igwn-alert topics
    ``gracedb-local.NODE``."""
    return {
        'kafka_alert_config': {
            'gcn': {'url': f'{url}/igwn.gwalert', 'format': 'json'},
            'scimma': {'url': f'{url}/igwn.gwalert-avro', 'format': 'avro'}},
        'kafka_hop_auth': False,
        'kafka_consumer_session_timeout': 6.0,
        'igwn_alert_url': url,
        'igwn_alert_group': 'gracedb-local',
        'gracedb_server_alert_transports': ['redis', 'kafka'],
    }


def start_children(supervisor, env, log_dir, data_dir, settings,
                   checkpoint):
    """Start every child process but the servers (Redis, Kafka) under
    `supervisor`, calling `checkpoint` after each."""
    def add(name, argv):
        supervisor.add(Child(name, argv, env,
                             os.path.join(log_dir, f'{name}.log')))
        checkpoint()

    add('gracedb', celery_command(
        'gracedb-server', '--host', HOST,
        '--port', settings['gracedb_host'].rsplit(':', 1)[1],
        '--data-dir', os.path.join(data_dir, 'gracedb')))
    add('mock-gcn', celery_command(
        'mock-gcn-server', '--host', HOST,
        '--port', str(settings['gcn_remote_port'])))
    for name, queue_name, extra in WORKERS:
        add(f'worker-{name}', celery_command(
            'worker', '--hostname', f'{name}@%h', '--queues', queue_name,
            '--loglevel', 'INFO', '--events', *extra))
    add('beat', celery_command(
        'beat', '--loglevel', 'INFO',
        '--schedule', os.path.join(data_dir, 'celerybeat-schedule')))
    add('flower', celery_command(
        'flower', f'--address={HOST}', f'--port={settings["flower_port"]}'))
    add('console', celery_command(
        'console', '--host', HOST, '--port', str(settings['console_port'])))


def child_state(child):
    """What ``--status`` needs to know of `child`, as a dict."""
    restart_at = None
    if child.restart_at is not None:
        # Wall-clock time: another process reads it.
        restart_at = time.time() + child.restart_at - time.monotonic()
    return {'name': child.name, 'state': child.state, 'pid': child.pid,
            'restarts': child.restarts, 'quick_exits': child.quick_exits,
            'last_exit': child.last_exit, 'restart_at': restart_at,
            'logfile': child.logfile}


class StatusFile:
    """``DATA_DIR/children.json``, rewritten when a child changes state."""

    def __init__(self, data_dir):
        self.path = os.path.join(data_dir, STATUS_NAME)
        self._written = None

    def update(self, supervisor):
        """Write the state of the children of `supervisor` if it changed
        since the last call."""
        states = [child_state(child) for child in supervisor.children]
        # The time of a restart moves a little at each call: compare the
        # rest only.
        key = [dict(state, restart_at=None) for state in states]
        if key == self._written:
            return
        tmp = f'{self.path}.tmp'
        with open(tmp, 'w') as f:
            json.dump(states, f, indent=1)
        os.replace(tmp, self.path)  # readers see a whole file
        self._written = key

    def remove(self):
        """Remove the file (the deployment stopped)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def describe_child(state, now):
    """One phrase about a child that is not running."""
    text = f"{state['name']} {state['last_exit'] or state['state']}"
    if state['restart_at'] is not None:
        wait = max(0.0, state['restart_at'] - now)
        text += f", restart {state['restarts'] + 1} in {wait:.0f} s"
    if state['quick_exits'] > 1:
        text += f" (backing off: {state['quick_exits']} quick exits)"
    return text


def children_row(data_dir, states):
    """The ``--status`` row about the children, or None when they all run.

    Parameters
    ----------
    data_dir : str
        The deployment's data directory.
    states : type
        :class:`~gwcelery.tools.nagios_checks.State`.
    """
    if held_by(os.path.join(data_dir, LOCK_NAME)) is None:
        return ('children', states.CRITICAL,
                'gwcelery local (the supervisor) is not running')
    try:
        with open(os.path.join(data_dir, STATUS_NAME)) as f:
            children = json.load(f)
    except (OSError, ValueError):
        return None  # still starting
    down = [state for state in children if state['state'] != 'running']
    if not down:
        return None
    now = time.time()
    worst = (states.CRITICAL if any(state['quick_exits'] > 1
                                    for state in down)
             else states.WARNING)
    return ('children', worst,
            '; '.join(describe_child(state, now) for state in down))
