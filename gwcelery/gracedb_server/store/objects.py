"""The GraceDB object model over the database: URLs, lookups by id, and
the JSON shapes of events, superevents, logs, labels, tags, VOEvents and
signoffs as the API and the alerts show them."""

import datetime
import json
from urllib.parse import quote

from ..errors import not_found
from ..identifiers import (
    CATEGORIES,
    GW_ID_RE,
    SUPEREVENT_ID_RE,
    parse_graceid,
    utc_to_gps,
)
from .database import Database

#: Half-width (s) of the window for ``superevent_neighbours`` of events.
NEIGHBOUR_WINDOW = 100.0

#: LVAlert node of the superevents of each category.
SUPEREVENT_NODES = {'P': 'superevent', 'T': 'test_superevent',
                    'M': 'mdc_superevent'}


def format_time(timestamp):
    """GraceDB's display format of a creation time."""
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def created_to_gps(timestamp):
    """GPS time of a Unix timestamp."""
    return utc_to_gps(datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc))


def is_event_id(object_id):
    """Whether ``object_id`` names an event (else a superevent)."""
    return parse_graceid(object_id) is not None


def sequence_number(value, name):
    """The number ``N`` of a log message or VOEvent in a URL; 404 if it is
    not a number (nothing can have that number)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise not_found(f'{name} {value} does not exist.') from None


def event_nodes(row):
    """The LVAlert nodes of an event: ``group_pipeline`` and
    ``group_pipeline_search``."""
    nodes = [f"{row['grp']}_{row['pipeline']}".lower()]
    if row['search']:
        nodes.append(f"{nodes[0]}_{row['search']}".lower())
    return nodes


class ObjectModel(Database):
    """The database seen as GraceDB objects.

    ``api_root`` is the absolute URL of the API (``http://host:port/api/``)
    used in the ``links`` of the objects and in alerts.
    """

    def __init__(self, data_dir, api_root):
        super().__init__(data_dir)
        self.api_root = api_root

    # --- URLs -------------------------------------------------------------

    def event_url(self, graceid, suffix=''):
        """URL of an event, or of ``suffix`` below it."""
        return f'{self.api_root}events/{graceid}{suffix}'

    def superevent_url(self, superevent_id, suffix=''):
        """URL of a superevent, or of ``suffix`` below it."""
        return f'{self.api_root}superevents/{superevent_id}/{suffix}'

    def object_url(self, obj, event_suffix, superevent_suffix):
        """URL below an event or a superevent, whose routes are spelled
        differently."""
        if is_event_id(obj):
            return self.event_url(obj, event_suffix)
        return self.superevent_url(obj, superevent_suffix)

    def file_url(self, obj, name, version):
        """URL of one version of a file of an object."""
        path = f'files/{quote(name)},{version}'
        return self.object_url(obj, '/' + path, path)

    # --- lookups ----------------------------------------------------------

    def event_row(self, graceid, db=None):
        """The database row of an event; 404 if there is none."""
        parsed = parse_graceid(graceid)
        if parsed is not None:
            prefix, number = parsed
            row = (db or self.db).execute(
                'SELECT * FROM events WHERE id = ?', (number,)).fetchone()
            if row is not None and prefix in ('G', row['graceid'][0]):
                return row
        raise not_found(f'Event {graceid} does not exist.')

    def superevent_row(self, superevent_id, db=None):
        """The row of a superevent given its id or GW id; 404 if none."""
        db = db or self.db
        row = None
        if SUPEREVENT_ID_RE.match(superevent_id or ''):
            row = db.execute('SELECT * FROM superevents WHERE '
                             'superevent_id = ?', (superevent_id,)).fetchone()
        elif GW_ID_RE.match(superevent_id or ''):
            row = db.execute('SELECT * FROM superevents WHERE gw_id = ?',
                             (superevent_id,)).fetchone()
        if row is None:
            raise not_found(f'Superevent {superevent_id} does not exist.')
        return row

    def superevent_key(self, superevent_id, db=None):
        """The superevent id of a superevent given its id or GW id; 404 if
        there is none."""
        return self.superevent_row(superevent_id, db)['superevent_id']

    def object_key(self, object_id, db=None):
        """The canonical id (graceid or superevent_id) of an object; 404 if
        it does not exist."""
        if is_event_id(object_id):
            return self.event_row(object_id, db)['graceid']
        return self.superevent_key(object_id, db)

    def label_names(self, obj, db=None):
        """Names of the labels of an object, in the order applied."""
        return [row['name'] for row in (db or self.db).execute(
            'SELECT name FROM labels WHERE obj = ? ORDER BY rowid', (obj,))]

    # --- JSON shapes --------------------------------------------------------

    def event_dict(self, row, db=None, neighbours=False):
        """The API representation of an event row."""
        db = db or self.db
        graceid = row['graceid']
        created = row['created']
        gpstime = row['gpstime']
        latency = None if gpstime is None else round(
            created_to_gps(created) - gpstime, 6)
        event = {
            'submitter': row['submitter'],
            'created': format_time(created),
            'group': row['grp'],
            'graceid': graceid,
            'pipeline': row['pipeline'],
            'gpstime': gpstime,
            'reporting_latency': latency,
            'instruments': row['instruments'],
            'nevents': row['nevents'],
            'offline': bool(row['offline']),
            'search': row['search'],
            'far': row['far'],
            'far_is_upper_limit': bool(row['far_is_upper_limit']),
            'likelihood': row['likelihood'],
            'labels': self.label_names(graceid, db),
            'extra_attributes': json.loads(row['extra_attributes']),
            'superevent': row['superevent'],
            'processing_status': 'uploaded',
            'links': {
                'neighbors': self.event_url(graceid, '/neighbors/'),
                'log': self.event_url(graceid, '/log/'),
                'emobservations': self.event_url(graceid, '/emobservation/'),
                'files': self.event_url(graceid, '/files/'),
                'labels': self.event_url(graceid, '/labels/'),
                'self': self.event_url(graceid),
                'tags': self.event_url(graceid, '/tag/'),
            },
        }
        if neighbours:
            event['superevent_neighbours'] = self.superevent_neighbours(
                row, db)
        return event

    def superevent_neighbours(self, event_row, db):
        """Superevents of the event's category with t_0 near its time."""
        if event_row['gpstime'] is None:
            return {}
        rows = db.execute(
            'SELECT * FROM superevents WHERE category = ? AND t_0 BETWEEN ? '
            'AND ? ORDER BY t_0',
            (event_row['category'], event_row['gpstime'] - NEIGHBOUR_WINDOW,
             event_row['gpstime'] + NEIGHBOUR_WINDOW)).fetchall()
        neighbours = {}
        for row in rows:
            superevent = self.superevent_dict(row, db)
            neighbours[row['superevent_id']] = {
                key: superevent[key] for key in (
                    'superevent_id', 'gw_events', 'far', 't_start', 't_0',
                    't_end', 'labels', 'preferred_event',
                    'preferred_event_data')}
        return neighbours

    def superevent_dict(self, row, db=None, alert=False):
        """The API representation of a superevent row. In alerts the
        preferred event data carries its ``superevent_neighbours``."""
        db = db or self.db
        sid = row['superevent_id']
        members = db.execute(
            'SELECT graceid, grp FROM events WHERE superevent = ? '
            'ORDER BY id DESC', (sid,)).fetchall()
        preferred = self.event_row(row['preferred_event'], db)
        pipeline_preferred = {}
        for member in db.execute(
                'SELECT e.* FROM pipeline_preferred p JOIN events e ON '
                'e.graceid = p.graceid WHERE p.superevent = ? ORDER BY e.id',
                (sid,)):
            pipeline_preferred[member['pipeline']] = self.event_dict(
                member, db)
        return {
            'superevent_id': sid,
            'gw_id': row['gw_id'],
            'category': CATEGORIES[row['category']],
            'created': format_time(row['created']),
            'submitter': row['submitter'],
            'preferred_event': row['preferred_event'],
            'em_type': row['em_type'],
            't_start': row['t_start'],
            't_0': row['t_0'],
            't_end': row['t_end'],
            'gw_events': [m['graceid'] for m in members
                          if m['grp'] != 'External'],
            'em_events': [m['graceid'] for m in members
                          if m['grp'] == 'External'],
            'far': preferred['far'],
            'time_coinc_far': row['time_coinc_far'],
            'space_coinc_far': row['space_coinc_far'],
            'labels': self.label_names(sid, db),
            'links': {
                key: self.superevent_url(sid, f'{key}/')
                for key in ('events', 'labels', 'logs', 'files')
            } | {
                'self': self.superevent_url(sid),
                'voevents': self.superevent_url(sid, 'voevents/'),
                'emobservations': self.superevent_url(sid, 'emobservations/'),
            },
            'preferred_event_data': self.event_dict(preferred, db,
                                                    neighbours=alert),
            'pipeline_preferred_events': pipeline_preferred,
        }

    def log_dict(self, row, db=None):
        """The API representation of a log message row."""
        db = db or self.db
        obj, n = row['obj'], row['n']
        tag_names = [tag['name'] for tag in db.execute(
            'SELECT name FROM tags WHERE obj = ? AND n = ? ORDER BY rowid',
            (obj, n))]
        file_url = None if row['file_version'] is None else self.file_url(
            obj, row['filename'], row['file_version'])
        entry = {
            'N': n,
            'comment': row['comment'],
            'created': format_time(row['created']),
            'issuer': row['issuer'],
            'filename': row['filename'],
            'file_version': row['file_version'],
            'tag_names': tag_names,
            'file': file_url,
        }
        if is_event_id(obj):
            entry['self'] = self.event_url(obj, f'/log/{n}')
            entry['tags'] = self.event_url(obj, f'/log/{n}/tag/')
        else:
            entry = {'self': self.superevent_url(obj, f'logs/{n}/'), **entry}
        return entry

    def label_dict(self, row):
        """The API representation of a label row."""
        obj, name = row['obj'], row['name']
        return {
            'self': self.object_url(obj, f'/labels/{name}',
                                    f'labels/{name}/'),
            'name': name,
            'created': format_time(row['created']),
            'creator': row['creator'],
        }

    def tag_dict(self, row):
        """The API representation of a tag row."""
        obj, n, name = row['obj'], row['n'], row['name']
        return {
            'name': name,
            'displayName': row['display_name'] or name,
            'self': self.object_url(obj, f'/log/{n}/tag/{name}',
                                    f'logs/{n}/tags/{name}/'),
        }

    def voevent_dict(self, row):
        """The API representation of a VOEvent row."""
        fields = json.loads(row['fields'])
        obj, n = row['obj'], row['n']
        fields['links'] = {
            'self': self.object_url(obj, f'/voevent/{n}', f'voevents/{n}/'),
            'file': self.file_url(obj, fields['filename'],
                                  fields['file_version'])}
        return fields

    def signoff_dict(self, row):
        """The API representation of a signoff row."""
        typeinst = row['signoff_type'] + row['instrument']
        return {
            'self': self.superevent_url(row['superevent'],
                                        f'signoffs/{typeinst}/'),
            'signoff_type': row['signoff_type'],
            'instrument': row['instrument'],
            'status': row['status'],
            'submitter': row['submitter'],
            'comment': row['comment'],
        }

    # --- alerts -----------------------------------------------------------

    def alert_object(self, tx, obj, alert_type, data=None):
        """Queue an alert about ``obj`` (a graceid or superevent id) whose
        ``object`` is the object's current state."""
        if not self.active_transports:
            return
        if is_event_id(obj):
            row = self.event_row(obj, tx.db)
            state = self.event_dict(row, tx.db, neighbours=True)
            nodes = event_nodes(row)
        else:
            row = self.superevent_row(obj, tx.db)
            state = self.superevent_dict(row, tx.db, alert=True)
            nodes = [SUPEREVENT_NODES[row['category']]]
        tx.alert(nodes, obj, alert_type, state if data is None else data,
                 state)
