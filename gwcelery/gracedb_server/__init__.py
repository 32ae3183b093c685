"""A local GraceDB-compatible server.

The real GraceDB clients, gracedb-sdk (:class:`gracedb_sdk.Client`) and
ligo-gracedb (:class:`ligo.gracedb.rest.GraceDb`), work against it
unchanged over HTTP. It keeps events, superevents, logs, labels, files and
VOEvents in SQLite under a data directory, publishes an LVAlert message for
every change through pluggable transports (:mod:`.alerts`), and serves
pages for people at ``/superevents/``.

Start it with ``gwcelery gracedb-server`` or, in-process, with
:class:`GraceDbServer`.
"""

import logging
import os
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from .alerts import Publisher
from .app import create_app
from .store import Store
from .vocabulary import SERVER_VERSION

__version__ = SERVER_VERSION

__all__ = ('GraceDbServer',)

log = logging.getLogger(__name__)
access_log = logging.getLogger(__name__ + '.access')


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, logging each request at DEBUG level to
    ``gwcelery.gracedb_server.access`` instead of printing it."""

    def log_request(self, code='-', size='-'):
        access_log.debug('%s "%s" %s %s', self.address_string(),
                         self.requestline, code, size)

    def log(self, type, message, *args):
        getattr(access_log, type if type in ('info', 'warning', 'error')
                else 'info')(message, *args)


class GraceDbServer:
    """A GraceDB server on ``host:port`` storing under ``data_dir``.

    ``port=0`` picks a free port. ``public_url`` is the API root written in
    object links and alerts (default ``http://host:port/api/``).
    ``write_users`` and ``passwords`` restrict changes (see
    :func:`.app.create_app`). ``transports`` are alert transports
    (:mod:`.alerts`); more can be added with :meth:`add_transport`.
    """

    def __init__(self, data_dir, host='127.0.0.1', port=8000,
                 public_url=None, transports=(), write_users=None,
                 passwords=None):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = os.path.abspath(data_dir)
        self.host = host
        self.http = make_server(host, port, self._wsgi, threaded=True,
                                request_handler=RequestHandler)
        self.http.daemon_threads = True
        self.port = self.http.server_port
        public_host = '127.0.0.1' if host in ('', '0.0.0.0', '::') else host
        self.url = public_url or f'http://{public_host}:{self.port}/api/'
        self.store = Store(self.data_dir, self.url)
        self.app = create_app(self.store, write_users=write_users,
                              passwords=passwords)
        self.publishers = []
        self.thread = None
        for transport in transports:
            self.add_transport(transport)

    def _wsgi(self, environ, start_response):
        return self.app(environ, start_response)

    def add_transport(self, transport):
        """Publish alerts (from now on) through ``transport`` too."""
        publisher = Publisher(self.store, transport)
        self.publishers.append(publisher)
        return publisher

    def flush_alerts(self, timeout=10):
        """Wait until every committed alert went out on every transport."""
        return all(publisher.flush(timeout) for publisher in self.publishers)

    def serve_forever(self):
        """Serve requests in this thread until :meth:`stop`."""
        log.info('GraceDB server at %s, data in %s', self.url, self.data_dir)
        self.http.serve_forever(poll_interval=0.05)

    def start(self):
        """Serve requests in a background thread."""
        self.thread = threading.Thread(target=self.serve_forever,
                                       daemon=True, name='gracedb-http')
        self.thread.start()
        return self

    def stop(self):
        """Stop serving and publishing; the data stays on disk."""
        self.http.shutdown()
        self.http.server_close()
        if self.thread is not None:
            self.thread.join(10)
        for publisher in self.publishers:
            publisher.stop()
        self.publishers = []
        self.store.close_idle_connections()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
