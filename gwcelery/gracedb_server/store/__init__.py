"""SQLite storage and the GraceDB object model.

All state lives under the data directory: ``gracedb.sqlite3`` and the
uploaded files in ``files/``. :class:`Store` is built in layers, each a
module of this package:

* :mod:`.database`: connections, write transactions and the alert outbox;
* :mod:`.objects`: URLs, lookups by id and the JSON shapes of the objects;
* :mod:`.journal`: the log messages, files and labels every change writes;
* one module per resource family on top: :mod:`.events`,
  :mod:`.superevents`, :mod:`.logs` (with files and tags), :mod:`.labels`,
  :mod:`.signoffs`, :mod:`.permissions`, :mod:`.voevents` and
  :mod:`.search`.

The store takes typed values (numbers, category codes); reading them from
a request, and the 400s that go with it, is the HTTP layer's
(:mod:`gwcelery.gracedb_server.fields`).
"""

from .events import Events
from .labels import Labels
from .logs import Logs
from .permissions import Permissions
from .search import Search
from .signoffs import Signoffs
from .superevents import Superevents
from .voevents import VOEvents

__all__ = ('Store',)


class Store(Events, Superevents, Logs, Labels, Signoffs, Permissions,
            VOEvents, Search):
    """The GraceDB database under ``data_dir``: every operation of the API.

    ``api_root`` is the absolute URL of the API (``http://host:port/api/``)
    used in the ``links`` of the objects and in alerts.
    """
