"""Searches of events and superevents with GraceDB's query language
(compiled to SQL by :mod:`gwcelery.gracedb_server.query`), sorted and paged."""

import sqlite3

from ..errors import bad_request
from ..query import QueryError, compile_event_query, compile_superevent_query
from .objects import ObjectModel

#: Sort keys accepted for event searches and their SQL columns.
EVENT_SORT_COLUMNS = {
    'created': 'events.id', 'id': 'events.id', 'graceid': 'events.id',
    'gpstime': 'events.gpstime', 'far': 'events.far',
    'likelihood': 'events.likelihood', 'nevents': 'events.nevents',
    'group': 'events.grp', 'pipeline': 'events.pipeline',
    'search': 'events.search', 'submitter': 'events.submitter',
    'instruments': 'events.instruments'}

#: Sort keys accepted for superevent searches and their SQL columns.
SUPEREVENT_SORT_COLUMNS = {
    'created': 'superevents.id', 'id': 'superevents.id',
    't_0': 'superevents.t_0', 't_start': 'superevents.t_start',
    't_end': 'superevents.t_end',
    'superevent_id': 'superevents.date, superevents.category, '
                     'superevents.sequence',
    'preferred_event': 'CAST(substr(superevents.preferred_event, 2) AS '
                       'INTEGER)',
    'preferred_event__id': 'CAST(substr(superevents.preferred_event, 2) AS '
                           'INTEGER)',
    'submitter': 'superevents.submitter', 'gw_id': 'superevents.gw_id'}


def order_by(sort, sort_columns, table):
    """The SQL ``ORDER BY`` terms of a comma-separated ``sort`` (``-`` for
    descending), ending with the table's id so that pages are stable."""
    order = []
    for field in filter(None, (f.strip() for f in sort.split(','))):
        descending = field.startswith('-')
        column = sort_columns.get(field.lstrip('-+'))
        if column is None:
            raise bad_request(f'Invalid sort field: {field}')
        order.append(f"{column} {'DESC' if descending else 'ASC'}")
    order.append(f'{table}.id ASC')
    return ', '.join(order)


class Search(ObjectModel):
    """Event and superevent searches."""

    def search_events(self, query, sort, start, count):
        """Events matching ``query``: ``(page of event dicts, total)``."""
        return self._search(
            'events', compile_event_query, query, sort or '-created', start,
            count, EVENT_SORT_COLUMNS, self.event_dict)

    def search_superevents(self, query, sort, start, count):
        """Superevents matching ``query``: ``(page, total)``."""
        return self._search(
            'superevents', compile_superevent_query, query,
            sort or '-created', start, count, SUPEREVENT_SORT_COLUMNS,
            self.superevent_dict)

    def _search(self, table, compile_query, query, sort, start, count,
                sort_columns, serialize):
        try:
            where, params = compile_query(query)
        except QueryError as exc:
            raise bad_request(f'Invalid query: {exc}') from None
        order = order_by(sort, sort_columns, table)
        db = self.db
        try:
            total = db.execute(f'SELECT COUNT(*) FROM {table} WHERE {where}',
                               params).fetchone()[0]
            rows = db.execute(
                f'SELECT * FROM {table} WHERE {where} ORDER BY {order} '
                'LIMIT ? OFFSET ?', (*params, count, start)).fetchall()
        except sqlite3.Error as exc:
            raise bad_request(f'Invalid query: {exc}') from None
        return [serialize(row, db) for row in rows], total
