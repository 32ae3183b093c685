"""``gwcelery mock-gcn-server``: a stand-in for NASA's GCN VOEvent server.

The local deployment's :func:`gwcelery.tasks.gcn.listen` connects to it
as it would to GCN. It serves, over the VOEvent Transport Protocol, the
notices that :func:`gwcelery.tasks.first2years.inject_grb` queued in Redis
(key :obj:`~gwcelery.conf.mock_gcn_queue_key`), with the same server code
as the pipeline's own VOEvent broker
(:func:`gwcelery.util.voevent_broker.serve_queue`).
"""

import logging
import signal
import threading

import click

from ..util.voevent_broker import open_server, serve_queue


@click.command(name='mock-gcn-server')
@click.option('--host', default='127.0.0.1', show_default=True,
              help='Address to listen on; only this machine may connect.')
@click.option('--port', type=int, required=True, help='Port to listen on.')
def mock_gcn_server(host, port):
    """Serve mock GCN notices to the pipeline's GCN listener."""
    from .. import app

    logging.basicConfig(level='INFO', format='%(asctime)s %(levelname)s '
                        '%(name)s: %(message)s')
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *args: stop.set())
    server = open_server((host, port))
    click.echo(f'Mock GCN server on {host}:{port}, serving '
               f'{app.conf.mock_gcn_queue_key}')
    serve_queue(server, stop.is_set, ['127.0.0.1'], app.conf,
                app.conf.mock_gcn_queue_key)
