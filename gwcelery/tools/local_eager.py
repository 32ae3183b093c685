"""``gwcelery local --eager``: the pipeline in one process.

Every task runs inline (``task_always_eager``), so a debugger or a
traceback shows the whole chain from an alert to its last task.
"""

import contextlib
import math
import os
import queue
import socket
import textwrap
import threading
import time

import click

from ..util.dead_letters import Rejected
from ..util.redis_server import RedisServer, free_port
from .local import HOST, describe_mock
from .milestones import decode_alert, describe_alert


class AlertQueue:
    """Alert transport of the eager mode: the local GraceDB server's
    alerts wait in memory until the main loop handles them."""

    name = 'in-process queue'

    def __init__(self):
        self.queue = queue.Queue()

    def publish(self, node, message):
        self.queue.put((node, message))

    def close(self):
        pass


def run_eager(data_dir, settings, gracedb_port, mock_interval, report,
              stop_signals):
    """Run the pipeline in this one process with ``task_always_eager``.

    The local GraceDB server runs in a thread and hands its alerts to
    this process's main loop, which dispatches each to its handlers; every
    task runs inline, so a debugger or a traceback shows the whole chain.
    Redis is still started, only to hold the VOEvents for the broker
    thread that GCN clients connect to: Celery itself uses no broker, and
    there is no GCN listener (no mock GRBs). Runs until `stop_signals`
    (:class:`~gwcelery.util.supervisor.StopSignals`) get one.
    """
    from .. import app
    from ..gracedb_server import GraceDbServer
    from ..tasks import first2years, lvalert
    from ..util.voevent_broker import serve_queue

    redis_server = RedisServer(port=free_port(HOST),
                               data_dir=os.path.join(data_dir, 'redis'),
                               persistent=True)
    stopping = threading.Event()
    broker = None

    def stop_broker():
        stopping.set()
        if broker is not None and broker.is_alive():
            broker.join(5)

    with contextlib.ExitStack() as started:
        try:
            # Redis and the broker are registered for stopping before they
            # start, so that an interrupt during their start stops them;
            # the GraceDB server's stop would wait for ever unless its
            # thread started.
            started.callback(redis_server.stop)
            redis_server.start()
            stop_signals.raise_if_received()
            app.conf.update(settings, broker_url=redis_server.url,
                            result_backend=redis_server.url,
                            task_always_eager=True,
                            task_eager_propagates=True)
            alerts = AlertQueue()
            gracedb = GraceDbServer(os.path.join(data_dir, 'gracedb'),
                                    host=HOST, port=gracedb_port,
                                    transports=[alerts]).start()
            started.callback(gracedb.stop)
            broker_socket = started.enter_context(
                socket.create_server((HOST, settings['gcn_bind_port'])))
            broker_socket.settimeout(1.0)
            started.callback(stop_broker)
            broker = threading.Thread(
                target=serve_queue, daemon=True, name='voevent-broker',
                args=(broker_socket, stopping.is_set, [HOST], app.conf))
            broker.start()
            pages = settings['gracedb_url'].replace('/api/', '/superevents/')
            click.echo('gwcelery local is up '
                       '(eager mode: one process, no Celery broker)')
            click.echo(textwrap.dedent(f'''\
                  GraceDB:        {pages}
                  VOEvent broker: {HOST}:{settings['gcn_bind_port']}
                  Mock events:    {describe_mock(mock_interval)}
                Milestones follow. Press Ctrl-C to stop.'''))
            dispatch_alerts(alerts, mock_interval, first2years.upload_event,
                            lvalert.process_message, report,
                            stop_signals.raise_if_received)
        except KeyboardInterrupt:
            report('Stopping...')


def dispatch_alerts(alerts, mock_interval, upload_event, process_message,
                    report, checkpoint):
    """The eager mode's main loop, until KeyboardInterrupt: upload a mock
    event every `mock_interval` seconds (None: never), and hand each alert
    of the local GraceDB server to its handlers. `checkpoint` is called at
    each turn (and may raise KeyboardInterrupt)."""
    reported = set()
    next_mock = time.monotonic() if mock_interval else math.inf
    while True:
        checkpoint()
        if time.monotonic() >= next_mock:
            next_mock += mock_interval
            upload_event.delay()
        try:
            node, message = alerts.queue.get(timeout=0.5)
        except queue.Empty:
            continue
        try:
            line = describe_alert(decode_alert(message))
        except Rejected:
            line = None  # process_message logs it and keeps it
        if line and line not in reported:
            reported.add(line)
            report(line)
        # Never raises: a failing handler is logged with its traceback.
        process_message(node, message)
