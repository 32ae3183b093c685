"""GraceDB's text query language, compiled to an SQLite ``WHERE`` clause.

Terms separated by spaces are ANDed. A term is one of

* ``key: value`` (for example ``group: CBC Burst``, ``t_0: 1 .. 2``,
  ``superevent: S250101a``, ``event: G123``, ``is_gw: true``,
  ``submitter: "emfollow"``, ``created: 2025-01-01 .. 2025-02-01``);
* a bare GPS time or range ``A .. B`` (``gpstime`` of events, ``t_0`` of
  superevents);
* a bare graceid or graceid range (``G1 .. G9``), superevent id or GW id;
* bare group, pipeline and search names (events) or category names
  (superevents); consecutive names of one kind are ORed (a label with the
  name of a pipeline, such as ``SNEWS``, needs ``label:``);
* a boolean expression of labels and attribute comparisons, with ``~``
  (not), ``&`` or ``,`` (and), ``|`` (or) and parentheses:
  ``EM_READY & ~DQV``, ``far < 1e-6``, ``grbevent.trigger_id = "123"``,
  ``ci.snr > 8`` (aliases ``si``, ``ci``, ``mb``, ``li``, ``grb``, ``inj``).

As GraceDB does, event queries leave out group Test unless the query
mentions "test" and search MDC unless it mentions "mdc"; superevent
queries return Production superevents unless a category is given.
Errors raise :class:`QueryError`.
"""

from .events import EventQuery
from .parser import QueryError
from .superevents import SupereventQuery

__all__ = ('QueryError', 'compile_event_query', 'compile_superevent_query')


def compile_event_query(text):
    """``(where_sql, params)`` of an event query."""
    return EventQuery(text).compile()


def compile_superevent_query(text):
    """``(where_sql, params)`` of a superevent query."""
    return SupereventQuery(text).compile()
