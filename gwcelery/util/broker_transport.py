"""kombu's Redis transport, made to ride out a restart of Redis.

When the broker connection breaks, a Celery worker closes it and opens a
new one, but the tasks that were running go on and acknowledge their
messages when they end, through the channel of the closed connection.
kombu's Redis channel then builds a new connection pool from its
connection's settings, which a closed connection no longer has: the
acknowledgement raises ``AttributeError: 'NoneType' object has no
attribute 'hostname'``, and the worker exits with an unrecoverable error.

With Redis, a delivery tag is not tied to a channel: the ``unacked``
hash is the same for every connection. :class:`Channel` therefore keeps
the connection settings it was opened with, and acknowledges (or gives
back) a message of a closed connection through a new connection with
those settings. :func:`install` makes it the transport of ``redis://``
URLs in this process.
"""

from kombu import transport
from kombu.transport import redis as kombu_redis

#: The alias under which :class:`Transport` replaces kombu's own.
SCHEMES = ('redis', 'rediss')


class Channel(kombu_redis.Channel):
    """A Redis channel that can still reach Redis after its connection
    was closed (see the module docstring)."""

    _saved_connparams = None

    def _connparams(self, asynchronous=False):
        saved = self._saved_connparams
        if self.connection.client is None and saved:
            return dict(saved.get(asynchronous) or next(iter(saved.values())))
        params = super()._connparams(asynchronous=asynchronous)
        self._saved_connparams = {**(saved or {}), asynchronous: dict(params)}
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install():
    """Use :class:`Transport` for the ``redis://`` broker URLs of every
    connection that this process opens from now on."""
    path = f'{__name__}:Transport'
    for scheme in SCHEMES:
        transport.TRANSPORT_ALIASES[scheme] = path
