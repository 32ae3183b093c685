"""SQLite storage and the GraceDB object model.

All state lives under the data directory: ``gracedb.sqlite3`` and the
uploaded files in ``files/``. Every change runs in one SQLite transaction
(:meth:`Store.transaction`) under a process-wide write lock; the alerts a
change causes are written to the ``outbox`` table in the same transaction
and published by :mod:`.alerts` only once it has been committed.
"""

import contextlib
import datetime
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from urllib.parse import quote

from .errors import ApiError, bad_request, not_found
from .identifiers import (
    CATEGORIES,
    GW_ID_RE,
    SUPEREVENT_ID_RE,
    event_category,
    event_prefix,
    format_graceid,
    format_gw_id,
    format_superevent_id,
    parse_graceid,
    superevent_date,
    utc_to_gps,
)
from .parsers import EventFileError, parse_event_file
from .query import QueryError, compile_event_query, compile_superevent_query
from .vocabulary import (
    EXPOSED_PERMISSIONS,
    GROUPS,
    INSTRUMENTS,
    LABELS,
    PIPELINES,
    SEARCHES,
    SIGNOFF_STATUSES,
    SIGNOFF_TYPES,
    VOEVENT_FILE_TYPES,
    VOEVENT_TYPES,
)
from .voevent import build_voevent

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    graceid TEXT NOT NULL UNIQUE,
    grp TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    search TEXT,
    category TEXT NOT NULL,
    submitter TEXT NOT NULL,
    created REAL NOT NULL,
    gpstime REAL,
    far REAL,
    instruments TEXT NOT NULL DEFAULT '',
    nevents INTEGER,
    likelihood REAL,
    far_is_upper_limit INTEGER NOT NULL DEFAULT 0,
    offline INTEGER NOT NULL DEFAULT 0,
    extra_attributes TEXT NOT NULL DEFAULT '{}',
    superevent TEXT
);
CREATE INDEX IF NOT EXISTS events_gpstime ON events (gpstime);
CREATE INDEX IF NOT EXISTS events_superevent ON events (superevent);
CREATE TABLE IF NOT EXISTS superevents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    superevent_id TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    date TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    gw_id TEXT UNIQUE,
    gw_sequence INTEGER,
    created REAL NOT NULL,
    submitter TEXT NOT NULL,
    preferred_event TEXT NOT NULL,
    em_type TEXT,
    t_start REAL NOT NULL,
    t_0 REAL NOT NULL,
    t_end REAL NOT NULL,
    time_coinc_far REAL,
    space_coinc_far REAL,
    UNIQUE (category, date, sequence)
);
CREATE INDEX IF NOT EXISTS superevents_t_0 ON superevents (t_0);
CREATE TABLE IF NOT EXISTS pipeline_preferred (
    superevent TEXT NOT NULL,
    graceid TEXT NOT NULL,
    PRIMARY KEY (superevent, graceid)
);
CREATE TABLE IF NOT EXISTS labels (
    obj TEXT NOT NULL,
    name TEXT NOT NULL,
    creator TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (obj, name)
);
CREATE TABLE IF NOT EXISTS logs (
    obj TEXT NOT NULL,
    n INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created REAL NOT NULL,
    issuer TEXT NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    file_version INTEGER,
    PRIMARY KEY (obj, n)
);
CREATE TABLE IF NOT EXISTS tags (
    obj TEXT NOT NULL,
    n INTEGER NOT NULL,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (obj, n, name)
);
CREATE TABLE IF NOT EXISTS files (
    obj TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (obj, name, version)
);
CREATE TABLE IF NOT EXISTS voevents (
    obj TEXT NOT NULL,
    n INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (obj, n)
);
CREATE TABLE IF NOT EXISTS signoffs (
    superevent TEXT NOT NULL,
    signoff_type TEXT NOT NULL,
    instrument TEXT NOT NULL,
    status TEXT NOT NULL,
    comment TEXT NOT NULL,
    submitter TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (superevent, instrument)
);
CREATE TABLE IF NOT EXISTS permissions (
    superevent TEXT NOT NULL,
    grp TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (superevent, grp, permission)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_cursors (
    name TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
"""

#: Half-width (s) of the window for ``superevent_neighbours`` of events.
NEIGHBOUR_WINDOW = 100.0

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

#: Labels that request a signoff, by signoff key (instrument or '').
SIGNOFF_REQUEST_LABELS = {'': 'ADVREQ', 'H1': 'H1OPS', 'L1': 'L1OPS',
                          'V1': 'V1OPS'}


def format_time(timestamp):
    """GraceDB's display format of a creation time."""
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def created_to_gps(timestamp):
    """GPS time of a Unix timestamp."""
    return utc_to_gps(datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc))


def to_float(value, name, required=True):
    """Read a float field of a request; 400 if it is not a number."""
    if value is None or value == '':
        if required:
            raise bad_request(f'{name}: This field is required.')
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_request(f'{name}: A valid number is required.') from None


def to_bool(value):
    """Read a boolean field sent as ``True``/``False`` (or JSON)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('true', '1', 'yes', 'on')


def is_event_id(object_id):
    """Whether ``object_id`` names an event (else a superevent)."""
    return parse_graceid(object_id) is not None


class Transaction:
    """One write transaction: its connection, the files written in it and a
    way to queue alerts."""

    def __init__(self, store, connection):
        self.store = store
        self.db = connection
        self.new_files = []
        self.alert_count = 0
        self.now = time.time()

    def alert(self, nodes, uid, alert_type, data, obj):
        """Queue an LVAlert message for publication after the commit (if
        any alert transport is active)."""
        if not self.store.active_transports:
            return
        message = json.dumps({'uid': uid, 'alert_type': alert_type,
                              'data': data, 'object': obj})
        for node in nodes:
            self.db.execute('INSERT INTO outbox (node, message) VALUES (?, ?)',
                            (node, message))
            self.alert_count += 1


class Store:
    """The GraceDB database under ``data_dir``.

    ``api_root`` is the absolute URL of the API (``http://host:port/api/``)
    used in the ``links`` of the objects and in alerts.
    """

    def __init__(self, data_dir, api_root):
        self.data_dir = os.path.abspath(data_dir)
        self.files_dir = os.path.join(self.data_dir, 'files')
        os.makedirs(self.files_dir, exist_ok=True)
        self.path = os.path.join(self.data_dir, 'gracedb.sqlite3')
        self.api_root = api_root
        self.write_lock = threading.RLock()
        self.commit_listeners = []
        self.active_transports = set()
        self._local = threading.local()
        self._idle_connections = queue.SimpleQueue()
        with contextlib.closing(self.connect()) as db:
            db.execute('PRAGMA journal_mode=WAL')
            db.executescript(SCHEMA)
            db.commit()

    # --- connections and transactions -------------------------------------

    def connect(self):
        """A new SQLite connection to the database."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute('PRAGMA synchronous=NORMAL')
        db.execute('PRAGMA foreign_keys=ON')
        return db

    @property
    def db(self):
        """This thread's connection: an idle one of the pool, or a new
        one."""
        db = getattr(self._local, 'db', None)
        if db is None:
            try:
                db = self._idle_connections.get_nowait()
            except queue.Empty:
                db = self.connect()
            self._local.db = db
        return db

    def release_thread_connection(self):
        """Give this thread's connection back to the pool (end of a
        request): the server's threads live for one request each, and
        opening a connection, or closing the last one (a WAL
        checkpoint), costs more than most requests."""
        db = getattr(self._local, 'db', None)
        if db is not None:
            self._local.db = None
            self._idle_connections.put(db)

    def close_idle_connections(self):
        """Close the connections of the pool (when the server stops)."""
        while True:
            try:
                self._idle_connections.get_nowait().close()
            except queue.Empty:
                return

    @contextlib.contextmanager
    def transaction(self):
        """Run a change atomically; alerts go out after the commit."""
        with self.write_lock:
            db = self.db
            db.execute('BEGIN IMMEDIATE')
            tx = Transaction(self, db)
            try:
                yield tx
                db.execute('COMMIT')
            except BaseException:
                db.execute('ROLLBACK')
                for path in tx.new_files:
                    with contextlib.suppress(OSError):
                        os.remove(path)
                raise
        if tx.alert_count:
            for listener in self.commit_listeners:
                listener()

    # --- URLs -------------------------------------------------------------

    def event_url(self, graceid, suffix=''):
        return f'{self.api_root}events/{graceid}{suffix}'

    def superevent_url(self, superevent_id, suffix=''):
        return f'{self.api_root}superevents/{superevent_id}/{suffix}'

    def object_url(self, obj, event_suffix, superevent_suffix):
        if is_event_id(obj):
            return self.event_url(obj, event_suffix)
        return self.superevent_url(obj, superevent_suffix)

    def file_url(self, obj, name, version):
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

    def object_key(self, object_id, db=None):
        """The canonical id (graceid or superevent_id) of an object; 404 if
        it does not exist."""
        if is_event_id(object_id):
            return self.event_row(object_id, db)['graceid']
        return self.superevent_row(object_id, db)['superevent_id']

    # --- serialisation ----------------------------------------------------

    def label_names(self, obj, db=None):
        return [row['name'] for row in (db or self.db).execute(
            'SELECT name FROM labels WHERE obj = ? ORDER BY rowid', (obj,))]

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
        obj, name = row['obj'], row['name']
        return {
            'self': self.object_url(obj, f'/labels/{name}',
                                    f'labels/{name}/'),
            'name': name,
            'created': format_time(row['created']),
            'creator': row['creator'],
        }

    def tag_dict(self, row):
        obj, n, name = row['obj'], row['n'], row['name']
        return {
            'name': name,
            'displayName': row['display_name'] or name,
            'self': self.object_url(obj, f'/log/{n}/tag/{name}',
                                    f'logs/{n}/tags/{name}/'),
        }

    def voevent_dict(self, row):
        fields = json.loads(row['fields'])
        obj, n = row['obj'], row['n']
        fields['links'] = {
            'self': self.object_url(obj, f'/voevent/{n}', f'voevents/{n}/'),
            'file': self.file_url(obj, fields['filename'],
                                  fields['file_version'])}
        return fields

    def signoff_dict(self, row):
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

    @staticmethod
    def event_nodes(row):
        nodes = [f"{row['grp']}_{row['pipeline']}".lower()]
        if row['search']:
            nodes.append(f"{nodes[0]}_{row['search']}".lower())
        return nodes

    @staticmethod
    def superevent_nodes(row):
        return [{'P': 'superevent', 'T': 'test_superevent',
                 'M': 'mdc_superevent'}[row['category']]]

    def alert_object(self, tx, obj, alert_type, data=None):
        """Queue an alert about ``obj`` (a graceid or superevent id) whose
        ``object`` is the object's current state."""
        if not self.active_transports:
            return
        if is_event_id(obj):
            row = self.event_row(obj, tx.db)
            state = self.event_dict(row, tx.db, neighbours=True)
            nodes = self.event_nodes(row)
        else:
            row = self.superevent_row(obj, tx.db)
            state = self.superevent_dict(row, tx.db, alert=True)
            nodes = self.superevent_nodes(row)
        tx.alert(nodes, obj, alert_type, state if data is None else data,
                 state)

    # --- files and logs ---------------------------------------------------

    def _write_file(self, tx, obj, name, contents):
        if not name or '/' in name or '\\' in name or name in ('.', '..'):
            raise bad_request(f'Invalid file name: {name!r}')
        version = tx.db.execute(
            'SELECT COUNT(*) FROM files WHERE obj = ? AND name = ?',
            (obj, name)).fetchone()[0]
        relative = uuid.uuid4().hex
        path = os.path.join(self.files_dir, relative)
        tx.new_files.append(path)
        with open(path + '.part', 'wb') as f:
            f.write(contents)
        os.replace(path + '.part', path)
        tx.db.execute('INSERT INTO files (obj, name, version, path, created) '
                      'VALUES (?, ?, ?, ?, ?)',
                      (obj, name, version, relative, tx.now))
        return version

    def add_log(self, tx, obj, comment, issuer, filename=None, contents=None,
                tags=(), display_names=()):
        """Write a log entry (with its file) and return its row."""
        n = tx.db.execute('SELECT COALESCE(MAX(n), 0) + 1 FROM logs WHERE '
                          'obj = ?', (obj,)).fetchone()[0]
        version = None
        if contents is not None:
            version = self._write_file(tx, obj, filename, contents)
        tx.db.execute(
            'INSERT INTO logs (obj, n, comment, created, issuer, filename, '
            'file_version) VALUES (?, ?, ?, ?, ?, ?, ?)',
            (obj, n, comment, tx.now, issuer,
             filename if contents is not None else '', version))
        display_names = list(display_names)
        for i, tag in enumerate(tags):
            display = display_names[i] if i < len(display_names) else ''
            tx.db.execute('INSERT OR IGNORE INTO tags (obj, n, name, '
                          'display_name) VALUES (?, ?, ?, ?)',
                          (obj, n, tag, display))
        return tx.db.execute('SELECT * FROM logs WHERE obj = ? AND n = ?',
                             (obj, n)).fetchone()

    def create_log(self, object_id, comment, issuer, filename=None,
                   contents=None, tags=(), display_names=(), label=None):
        """POST a log message (optionally with a file and a label)."""
        if contents is not None and not filename:
            raise bad_request('An uploaded file needs a file name.')
        if label is not None:
            self._check_label_name(label)
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            row = self.add_log(tx, obj, comment, issuer, filename, contents,
                               tags, display_names)
            entry = self.log_dict(row, tx.db)
            self.alert_object(tx, obj, 'log', entry)
            if label is not None:
                self._apply_label(tx, obj, label, issuer)
        return entry

    def logs(self, object_id):
        obj = self.object_key(object_id)
        return [self.log_dict(row) for row in self.db.execute(
            'SELECT * FROM logs WHERE obj = ? ORDER BY n', (obj,))]

    def log_row(self, obj, n, db=None):
        row = (db or self.db).execute(
            'SELECT * FROM logs WHERE obj = ? AND n = ?',
            (obj, _int(n, 'N'))).fetchone()
        if row is None:
            raise not_found(f'Log message {n} does not exist.')
        return row

    def get_log(self, object_id, n):
        return self.log_dict(self.log_row(self.object_key(object_id), n))

    def files(self, object_id):
        """The file list: ``name,version`` and the bare latest names."""
        obj = self.object_key(object_id)
        listing = {}
        for row in self.db.execute(
                'SELECT name, version FROM files WHERE obj = ? '
                'ORDER BY name, version', (obj,)):
            name, version = row['name'], row['version']
            listing[f'{name},{version}'] = self.file_url(obj, name, version)
            listing[name] = listing[f'{name},{version}']
        return dict(sorted(listing.items()))

    def file_path(self, object_id, name):
        """Path of a file given as ``name`` (latest) or ``name,version``."""
        obj = self.object_key(object_id)
        candidates = [(name, None)]
        base, sep, version = name.rpartition(',')
        if sep and version.isdigit():
            candidates.insert(0, (base, int(version)))
        for filename, version in candidates:
            if version is None:
                row = self.db.execute(
                    'SELECT path FROM files WHERE obj = ? AND name = ? '
                    'ORDER BY version DESC LIMIT 1', (obj, filename)
                ).fetchone()
            else:
                row = self.db.execute(
                    'SELECT path FROM files WHERE obj = ? AND name = ? AND '
                    'version = ?', (obj, filename, version)).fetchone()
            if row is not None:
                return os.path.join(self.files_dir, row['path'])
        raise not_found(f'File {name} not found')

    # --- tags -------------------------------------------------------------

    def tags(self, object_id, n):
        obj = self.object_key(object_id)
        self.log_row(obj, n)
        return [self.tag_dict(row) for row in self.db.execute(
            'SELECT * FROM tags WHERE obj = ? AND n = ? ORDER BY rowid',
            (obj, _int(n, 'N')))]

    def add_tag(self, object_id, n, name, display_name, issuer):
        if not name:
            raise bad_request('name: This field is required.')
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            row = self.log_row(obj, n, tx.db)
            exists = tx.db.execute(
                'SELECT 1 FROM tags WHERE obj = ? AND n = ? AND name = ?',
                (obj, row['n'], name)).fetchone()
            if exists:
                raise bad_request('Tag is already applied to this log message')
            tx.db.execute('INSERT INTO tags (obj, n, name, display_name) '
                          'VALUES (?, ?, ?, ?)',
                          (obj, row['n'], name, display_name or ''))
            self.add_log(tx, obj, f"Tagged message {row['n']}: {name}.",
                         issuer)
            tag = tx.db.execute(
                'SELECT * FROM tags WHERE obj = ? AND n = ? AND name = ?',
                (obj, row['n'], name)).fetchone()
            return self.tag_dict(tag)

    def remove_tag(self, object_id, n, name, issuer):
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            row = self.log_row(obj, n, tx.db)
            deleted = tx.db.execute(
                'DELETE FROM tags WHERE obj = ? AND n = ? AND name = ?',
                (obj, row['n'], name)).rowcount
            if not deleted:
                raise not_found(f'Tag {name} is not applied to log message '
                                f"{row['n']}.")
            self.add_log(tx, obj, f"Removed tag {name} for message "
                         f"{row['n']}.", issuer)

    # --- labels -----------------------------------------------------------

    @staticmethod
    def _check_label_name(name):
        if name not in LABELS:
            raise bad_request(f'Label {name} does not exist',
                              f'Label {name} does not exist')

    def _apply_label(self, tx, obj, name, creator):
        """Apply a label; return its row, or ``None`` if already applied."""
        self._check_label_name(name)
        if tx.db.execute('SELECT 1 FROM labels WHERE obj = ? AND name = ?',
                         (obj, name)).fetchone():
            return None
        if name == 'ADVREQ' and not is_event_id(obj) and tx.db.execute(
                "SELECT 1 FROM signoffs WHERE superevent = ? AND "
                "signoff_type = 'ADV'", (obj,)).fetchone():
            message = ("The 'ADVREQ' label cannot be applied to request a "
                       "signoff because a related signoff already exists.")
            raise bad_request(message)
        tx.db.execute('INSERT INTO labels (obj, name, creator, created) '
                      'VALUES (?, ?, ?, ?)', (obj, name, creator, tx.now))
        self.add_log(tx, obj, f'Added label: {name}', creator)
        row = tx.db.execute('SELECT * FROM labels WHERE obj = ? AND name = ?',
                            (obj, name)).fetchone()
        self.alert_object(tx, obj, 'label_added', self.label_dict(row))
        return row

    def _remove_label(self, tx, obj, name, issuer):
        row = tx.db.execute('SELECT * FROM labels WHERE obj = ? AND name = ?',
                            (obj, name)).fetchone()
        if row is None:
            raise not_found(f'Label {name} is not applied to {obj}.')
        data = self.label_dict(row)
        tx.db.execute('DELETE FROM labels WHERE obj = ? AND name = ?',
                      (obj, name))
        self.add_log(tx, obj, f'Removed label: {name}', issuer)
        self.alert_object(tx, obj, 'label_removed', data)

    def labels(self, object_id):
        obj = self.object_key(object_id)
        return [self.label_dict(row) for row in self.db.execute(
            'SELECT * FROM labels WHERE obj = ? ORDER BY rowid', (obj,))]

    def get_label(self, object_id, name):
        obj = self.object_key(object_id)
        row = self.db.execute('SELECT * FROM labels WHERE obj = ? AND '
                              'name = ?', (obj, name)).fetchone()
        if row is None:
            raise not_found(f'Label {name} is not applied to {obj}.')
        return self.label_dict(row)

    def add_label(self, object_id, name, creator, unique=False):
        """Apply a label. Return ``(label dict, created)``; with
        ``unique=True`` (superevents) an applied label is a 400."""
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            row = self._apply_label(tx, obj, name, creator)
            if row is None:
                if unique:
                    raise bad_request(
                        'The fields superevent, name must make a unique set.',
                        f'Label {name} already applied to superevent {obj}')
                row = tx.db.execute('SELECT * FROM labels WHERE obj = ? AND '
                                    'name = ?', (obj, name)).fetchone()
                return self.label_dict(row), False
            return self.label_dict(row), True

    def remove_label(self, object_id, name, issuer):
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            self._remove_label(tx, obj, name, issuer)

    # --- events -----------------------------------------------------------

    def create_event(self, group, pipeline, search, offline, labels,
                     filename, contents, submitter):
        """Create an event from its uploaded file; return the event."""
        if group not in GROUPS:
            raise bad_request(f'group: "{group}" is not a valid choice.')
        if pipeline not in PIPELINES:
            raise bad_request(f'pipeline: "{pipeline}" is not a valid '
                              'choice.')
        if search and search not in SEARCHES:
            raise bad_request(f'search: "{search}" is not a valid choice.')
        for label in labels:
            self._check_label_name(label)
        if contents is None:
            raise bad_request('eventFile: No file was submitted.')
        try:
            fields = parse_event_file(contents, group, pipeline)
        except EventFileError as exc:
            raise bad_request(str(exc)) from None
        search = search or None
        with self.transaction() as tx:
            cursor = tx.db.execute(
                'INSERT INTO events (graceid, grp, pipeline, search, '
                'category, submitter, created, gpstime, far, instruments, '
                'nevents, likelihood, far_is_upper_limit, offline, '
                'extra_attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '
                '?, ?, ?, ?)',
                (uuid.uuid4().hex, group, pipeline, search,
                 event_category(group, search), submitter, tx.now,
                 fields['gpstime'], fields['far'], fields['instruments'],
                 fields['nevents'], fields['likelihood'],
                 int(fields['far_is_upper_limit']), int(bool(offline)),
                 json.dumps(fields['extra_attributes'])))
            graceid = format_graceid(event_prefix(group, pipeline, search),
                                     cursor.lastrowid)
            tx.db.execute('UPDATE events SET graceid = ? WHERE id = ?',
                          (graceid, cursor.lastrowid))
            self.add_log(tx, graceid, 'Original Data', submitter,
                         filename or 'initial.data', contents)
            self.alert_object(tx, graceid, 'new')
            for label in dict.fromkeys(labels):
                self._apply_label(tx, graceid, label, submitter)
            return self.event_dict(self.event_row(graceid, tx.db), tx.db)

    def replace_event(self, graceid, filename, contents, submitter):
        """Replace an event's data from a new upload (PUT)."""
        if contents is None:
            raise bad_request('eventFile: No file was submitted.')
        row = self.event_row(graceid)
        try:
            fields = parse_event_file(contents, row['grp'], row['pipeline'])
        except EventFileError as exc:
            raise bad_request(str(exc)) from None
        with self.transaction() as tx:
            row = self.event_row(graceid, tx.db)
            tx.db.execute(
                'UPDATE events SET gpstime = ?, far = ?, instruments = ?, '
                'nevents = ?, likelihood = ?, far_is_upper_limit = ?, '
                'extra_attributes = ? WHERE id = ?',
                (fields['gpstime'], fields['far'], fields['instruments'],
                 fields['nevents'], fields['likelihood'],
                 int(fields['far_is_upper_limit']),
                 json.dumps(fields['extra_attributes']), row['id']))
            self.add_log(tx, row['graceid'], 'Replaced original data',
                         submitter, filename or 'initial.data', contents)
            self.alert_object(tx, row['graceid'], 'update')

    def update_grbevent(self, graceid, values, submitter):
        """PATCH the GRB attributes of an external event."""
        with self.transaction() as tx:
            row = self.event_row(graceid, tx.db)
            extra = json.loads(row['extra_attributes'])
            if 'GRB' not in extra:
                raise bad_request(f'{graceid} is not a GRB event.')
            changes = {key: value for key, value in values.items()
                       if extra['GRB'].get(key) != value}
            if not changes:
                raise bad_request('Request would not modify the GRB event')
            extra['GRB'].update(changes)
            tx.db.execute('UPDATE events SET extra_attributes = ? WHERE '
                          'id = ?', (json.dumps(extra), row['id']))
            self.add_log(tx, row['graceid'], 'Updated GRB event parameters: '
                         + ', '.join(f'{key}: {value}' for key, value
                                     in changes.items()), submitter)
            self.alert_object(tx, row['graceid'], 'update')
            return self.event_dict(self.event_row(graceid, tx.db), tx.db)

    def get_event(self, graceid):
        return self.event_dict(self.event_row(graceid))

    # --- superevents ------------------------------------------------------

    def _check_event_for_superevent(self, db, graceid, category):
        row = self.event_row(graceid, db)
        if row['superevent'] is not None:
            raise bad_request(
                f"Event {row['graceid']} is already assigned to a Superevent",
                f"Event {row['graceid']} is already assigned to a "
                "superevent")
        if row['category'] != category:
            raise bad_request(
                f"Event {row['graceid']} is of type "
                f"'{CATEGORIES[row['category']]}', and cannot be assigned to "
                f"a superevent of type '{CATEGORIES[category]}'")
        return row

    def _add_member(self, tx, sid, event_row, issuer, alert=True):
        tx.db.execute('UPDATE events SET superevent = ? WHERE id = ?',
                      (sid, event_row['id']))
        self.add_log(tx, sid, f"Added event: {event_row['graceid']}", issuer)
        self.add_log(tx, event_row['graceid'],
                     f'Added to superevent: {sid}', issuer)
        if alert:
            self.alert_object(tx, sid, 'event_added')
        self.alert_object(tx, event_row['graceid'], 'added_to_superevent')

    def create_superevent(self, t_start, t_0, t_end, preferred_event,
                          category, events, labels, submitter):
        """Create a superevent; return it."""
        t_start = to_float(t_start, 't_start')
        t_0 = to_float(t_0, 't_0')
        t_end = to_float(t_end, 't_end')
        if not preferred_event:
            raise bad_request('preferred_event: This field is required.')
        category = _category_code(category or 'P')
        if not t_start <= t_0 <= t_end:
            raise bad_request('t_start, t_0, t_end: t_start <= t_0 <= t_end '
                              'is required.')
        try:
            date = superevent_date(t_0)
        except ValueError as exc:
            raise bad_request(f't_0: {exc}') from None
        for label in labels:
            self._check_label_name(label)
        with self.transaction() as tx:
            preferred = self._check_event_for_superevent(
                tx.db, preferred_event, category)
            if preferred['grp'] == 'External':
                raise bad_request('An external event cannot be the '
                                  'preferred event of a superevent.')
            members = {preferred['graceid']: preferred}
            for graceid in events:
                row = self._check_event_for_superevent(tx.db, graceid,
                                                       category)
                members.setdefault(row['graceid'], row)
            sequence = tx.db.execute(
                'SELECT COALESCE(MAX(sequence), 0) + 1 FROM superevents '
                'WHERE category = ? AND date = ?', (category, date)
            ).fetchone()[0]
            sid = format_superevent_id(category, date, sequence)
            tx.db.execute(
                'INSERT INTO superevents (superevent_id, category, date, '
                'sequence, created, submitter, preferred_event, t_start, '
                't_0, t_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (sid, category, date, sequence, tx.now, submitter,
                 preferred['graceid'], t_start, t_0, t_end))
            for row in members.values():
                tx.db.execute('UPDATE events SET superevent = ? WHERE id = ?',
                              (sid, row['id']))
            self.add_log(
                tx, sid, f'Superevent created with t_start={t_start}, '
                f't_0={t_0}, t_end={t_end}, preferred_event='
                f"{preferred['graceid']}", submitter)
            self.alert_object(tx, sid, 'new')
            for label in dict.fromkeys(labels):
                self._apply_label(tx, sid, label, submitter)
            for graceid in members:
                self.add_log(tx, graceid, f'Added to superevent: {sid}',
                             submitter)
                self.alert_object(tx, graceid, 'added_to_superevent')
            self.add_log(tx, preferred['graceid'],
                         f'Set as preferred event for superevent: {sid}',
                         submitter)
            self.alert_object(tx, preferred['graceid'],
                              'selected_as_preferred')
            return self.superevent_dict(self.superevent_row(sid, tx.db),
                                        tx.db)

    def update_superevent(self, superevent_id, values, submitter):
        """PATCH a superevent's parameters (only the given keys)."""
        numeric = ('t_start', 't_0', 't_end', 'time_coinc_far',
                   'space_coinc_far')
        changes = {}
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            sid = row['superevent_id']
            for key in numeric:
                if key in values:
                    value = to_float(values[key], key,
                                     required=key.startswith('t_'))
                    if value != row[key]:
                        changes[key] = value
            if 'em_type' in values:
                em_type = values['em_type'] or None
                if em_type != row['em_type']:
                    changes['em_type'] = em_type
            new_preferred = None
            if values.get('preferred_event'):
                new_preferred = self.event_row(values['preferred_event'],
                                               tx.db)
                if new_preferred['graceid'] != row['preferred_event']:
                    if new_preferred['grp'] == 'External':
                        raise bad_request('An external event cannot be the '
                                          'preferred event of a superevent.')
                    if new_preferred['superevent'] != sid:
                        self._check_event_for_superevent(
                            tx.db, new_preferred['graceid'], row['category'])
                    changes['preferred_event'] = new_preferred['graceid']
            if not changes:
                raise bad_request('Request would not modify the superevent')
            t_start = changes.get('t_start', row['t_start'])
            t_0 = changes.get('t_0', row['t_0'])
            t_end = changes.get('t_end', row['t_end'])
            if not t_start <= t_0 <= t_end:
                raise bad_request('t_start, t_0, t_end: t_start <= t_0 <= '
                                  't_end is required.')
            tx.db.execute(
                'UPDATE superevents SET ' + ', '.join(
                    f'{key} = ?' for key in changes) + ' WHERE id = ?',
                (*changes.values(), row['id']))
            description = ', '.join(f'{key}: {row[key]} -> {value}'
                                    for key, value in changes.items())
            self.add_log(tx, sid, 'Updated superevent parameters: '
                         + description, submitter)
            if 'preferred_event' in changes:
                if new_preferred['superevent'] != sid:
                    self._add_member(tx, sid, new_preferred, submitter)
            self.alert_object(tx, sid, 'update')
            if 'preferred_event' in changes:
                old = row['preferred_event']
                self.add_log(tx, old, 'Removed as preferred event for '
                             f'superevent: {sid}', submitter)
                self.alert_object(tx, old, 'removed_as_preferred')
                self.add_log(tx, new_preferred['graceid'],
                             f'Set as preferred event for superevent: {sid}',
                             submitter)
                self.alert_object(tx, new_preferred['graceid'],
                                  'selected_as_preferred')
            return self.superevent_dict(self.superevent_row(sid, tx.db),
                                        tx.db)

    def get_superevent(self, superevent_id):
        return self.superevent_dict(self.superevent_row(superevent_id))

    def superevent_events(self, superevent_id):
        sid = self.superevent_row(superevent_id)['superevent_id']
        return [row['graceid'] for row in self.db.execute(
            'SELECT graceid FROM events WHERE superevent = ? ORDER BY id',
            (sid,))]

    def add_event(self, superevent_id, graceid, submitter):
        """Add an event to a superevent."""
        if not graceid:
            raise bad_request('event: This field is required.')
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            event = self._check_event_for_superevent(tx.db, graceid,
                                                     row['category'])
            self._add_member(tx, row['superevent_id'], event, submitter)
            return event['graceid']

    def remove_event(self, superevent_id, graceid, submitter):
        """Remove an event from a superevent."""
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            sid = row['superevent_id']
            event = self.event_row(graceid, tx.db)
            if event['superevent'] != sid:
                raise not_found(f"Event {event['graceid']} is not in "
                                f'superevent {sid}.')
            if event['graceid'] == row['preferred_event']:
                raise bad_request(
                    f"Event {event['graceid']} can't be removed from "
                    f'superevent {sid} because it is the preferred event')
            tx.db.execute('UPDATE events SET superevent = NULL WHERE id = ?',
                          (event['id'],))
            tx.db.execute('DELETE FROM pipeline_preferred WHERE '
                          'superevent = ? AND graceid = ?',
                          (sid, event['graceid']))
            self.add_log(tx, sid, f"Removed event: {event['graceid']}",
                         submitter)
            self.add_log(tx, event['graceid'],
                         f'Removed from superevent: {sid}', submitter)
            self.alert_object(tx, sid, 'event_removed')
            self.alert_object(tx, event['graceid'], 'removed_from_superevent')

    def pipeline_preferred_events(self, superevent_id):
        sid = self.superevent_row(superevent_id)['superevent_id']
        return [row['graceid'] for row in self.db.execute(
            'SELECT graceid FROM pipeline_preferred WHERE superevent = ? '
            'ORDER BY rowid', (sid,))]

    def add_pipeline_preferred(self, superevent_id, graceid, submitter):
        """Make an event its pipeline's preferred event of a superevent."""
        if not graceid:
            raise bad_request('event: This field is required.')
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            sid = row['superevent_id']
            event = self.event_row(graceid, tx.db)
            if event['superevent'] != sid:
                raise bad_request(f"Event {event['graceid']} is not part of "
                                  f'superevent {sid}')
            tx.db.execute(
                'DELETE FROM pipeline_preferred WHERE superevent = ? AND '
                'graceid IN (SELECT graceid FROM events WHERE pipeline = ?)',
                (sid, event['pipeline']))
            tx.db.execute('INSERT INTO pipeline_preferred (superevent, '
                          'graceid) VALUES (?, ?)', (sid, event['graceid']))
            self.add_log(tx, sid, f"Added pipeline preferred event: "
                         f"{event['graceid']}", submitter)
            return event['graceid']

    def remove_pipeline_preferred(self, superevent_id, graceid, submitter):
        with self.transaction() as tx:
            sid = self.superevent_row(superevent_id, tx.db)['superevent_id']
            event = self.event_row(graceid, tx.db)
            if not tx.db.execute(
                    'DELETE FROM pipeline_preferred WHERE superevent = ? AND '
                    'graceid = ?', (sid, event['graceid'])).rowcount:
                raise not_found(f"Event {event['graceid']} is not a pipeline "
                                f'preferred event of {sid}.')
            self.add_log(tx, sid, 'Removed pipeline preferred event: '
                         f"{event['graceid']}", submitter)

    def confirm_as_gw(self, superevent_id, gw_id, submitter):
        """Confirm a superevent as a GW; return it."""
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            if row['gw_id'] is not None:
                raise bad_request('Superevent is already confirmed as a GW')
            sequence = tx.db.execute(
                'SELECT COALESCE(MAX(gw_sequence), 0) + 1 FROM superevents '
                'WHERE category = ? AND date = ?',
                (row['category'], row['date'])).fetchone()[0]
            if gw_id:
                if not GW_ID_RE.match(gw_id):
                    raise bad_request(f'gw_id: {gw_id} is not a valid GW id.')
                if tx.db.execute('SELECT 1 FROM superevents WHERE gw_id = ?',
                                 (gw_id,)).fetchone():
                    raise bad_request(f'gw_id: {gw_id} is already used.')
            else:
                gw_id = format_gw_id(row['category'], row['date'], sequence)
            tx.db.execute('UPDATE superevents SET gw_id = ?, gw_sequence = ? '
                          'WHERE id = ?', (gw_id, sequence, row['id']))
            sid = row['superevent_id']
            self.add_log(tx, sid, f'Confirmed as GW: {gw_id}', submitter)
            self.alert_object(tx, sid, 'confirmed_as_gw')
            return self.superevent_dict(self.superevent_row(sid, tx.db),
                                        tx.db)

    # --- signoffs -----------------------------------------------------------

    def signoffs(self, superevent_id):
        sid = self.superevent_row(superevent_id)['superevent_id']
        return [self.signoff_dict(row) for row in self.db.execute(
            'SELECT * FROM signoffs WHERE superevent = ? ORDER BY rowid',
            (sid,))]

    @staticmethod
    def _signoff_key(signoff_type, instrument):
        if signoff_type not in SIGNOFF_TYPES:
            raise bad_request(f'signoff_type: "{signoff_type}" is not a '
                              'valid choice.')
        instrument = instrument or ''
        if signoff_type == 'OP' and instrument not in INSTRUMENTS:
            raise bad_request('instrument: an operator signoff needs one of '
                              + ', '.join(INSTRUMENTS))
        if signoff_type == 'ADV':
            instrument = ''
        return instrument

    @staticmethod
    def _check_status(status):
        if status not in SIGNOFF_STATUSES:
            raise bad_request(f'status: "{status}" is not a valid choice.')

    @staticmethod
    def _result_label(instrument, status):
        return f"{instrument or 'ADV'}{status}"

    def _signoff_row(self, db, sid, typeinst):
        signoff_type = 'ADV' if typeinst == 'ADV' else 'OP'
        instrument = typeinst[2:] if typeinst.startswith('OP') else ''
        row = db.execute('SELECT * FROM signoffs WHERE superevent = ? AND '
                         'signoff_type = ? AND instrument = ?',
                         (sid, signoff_type, instrument)).fetchone()
        if row is None:
            raise not_found(f'Signoff {typeinst} does not exist.')
        return row

    def get_signoff(self, superevent_id, typeinst):
        sid = self.superevent_row(superevent_id)['superevent_id']
        return self.signoff_dict(self._signoff_row(self.db, sid, typeinst))

    def create_signoff(self, superevent_id, signoff_type, instrument, status,
                       comment, submitter):
        instrument = self._signoff_key(signoff_type, instrument)
        self._check_status(status)
        with self.transaction() as tx:
            sid = self.superevent_row(superevent_id, tx.db)['superevent_id']
            if tx.db.execute('SELECT 1 FROM signoffs WHERE superevent = ? '
                             'AND instrument = ?', (sid, instrument)
                             ).fetchone():
                raise bad_request(
                    'The fields superevent, instrument must make a unique '
                    'set.', f'{signoff_type} signoff for '
                    f"{instrument or 'advocate'} already exists on "
                    f'superevent {sid}')
            request_label = SIGNOFF_REQUEST_LABELS[instrument]
            if request_label not in self.label_names(sid, tx.db):
                kind = 'Advocate' if signoff_type == 'ADV' else 'Operator'
                raise bad_request(
                    f'{kind} signoff not requested for superevent {sid}: '
                    f"label '{request_label}' not present.")
            tx.db.execute(
                'INSERT INTO signoffs (superevent, signoff_type, instrument, '
                'status, comment, submitter, created) VALUES '
                '(?, ?, ?, ?, ?, ?, ?)', (sid, signoff_type, instrument,
                                          status, comment or '', submitter,
                                          tx.now))
            row = self._signoff_row(tx.db, sid, signoff_type + instrument)
            self.add_log(tx, sid, f'Signoff created: {signoff_type} '
                         f'{instrument} {status}: {comment}', submitter)
            self.alert_object(tx, sid, 'signoff_created',
                              self.signoff_dict(row))
            self._remove_label(tx, sid, request_label, submitter)
            self._apply_label(tx, sid, self._result_label(instrument, status),
                              submitter)
            return self.signoff_dict(row)

    def update_signoff(self, superevent_id, typeinst, status, comment,
                       submitter):
        with self.transaction() as tx:
            sid = self.superevent_row(superevent_id, tx.db)['superevent_id']
            row = self._signoff_row(tx.db, sid, typeinst)
            new_status = status or row['status']
            self._check_status(new_status)
            new_comment = row['comment'] if comment is None else comment
            tx.db.execute('UPDATE signoffs SET status = ?, comment = ? '
                          'WHERE superevent = ? AND instrument = ?',
                          (new_status, new_comment, sid, row['instrument']))
            if new_status != row['status']:
                old_label = self._result_label(row['instrument'],
                                               row['status'])
                if old_label in self.label_names(sid, tx.db):
                    self._remove_label(tx, sid, old_label, submitter)
                self._apply_label(tx, sid, self._result_label(
                    row['instrument'], new_status), submitter)
            row = self._signoff_row(tx.db, sid, typeinst)
            self.add_log(tx, sid, f'Signoff updated: {typeinst} {new_status}'
                         f': {new_comment}', submitter)
            self.alert_object(tx, sid, 'signoff_updated',
                              self.signoff_dict(row))
            return self.signoff_dict(row)

    def delete_signoff(self, superevent_id, typeinst, submitter):
        with self.transaction() as tx:
            sid = self.superevent_row(superevent_id, tx.db)['superevent_id']
            row = self._signoff_row(tx.db, sid, typeinst)
            data = self.signoff_dict(row)
            tx.db.execute('DELETE FROM signoffs WHERE superevent = ? AND '
                          'instrument = ?', (sid, row['instrument']))
            self.add_log(tx, sid, f'Signoff deleted: {typeinst}', submitter)
            self.alert_object(tx, sid, 'signoff_deleted', data)
            result = self._result_label(row['instrument'], row['status'])
            if result in self.label_names(sid, tx.db):
                self._remove_label(tx, sid, result, submitter)
            self._apply_label(tx, sid,
                              SIGNOFF_REQUEST_LABELS[row['instrument']],
                              submitter)

    # --- permissions --------------------------------------------------------

    def permissions(self, superevent_id):
        sid = self.superevent_row(superevent_id)['superevent_id']
        return [{'group': row['grp'], 'permission': row['permission']}
                for row in self.db.execute(
                    'SELECT * FROM permissions WHERE superevent = ? '
                    'ORDER BY rowid', (sid,))]

    def modify_permissions(self, superevent_id, action, submitter):
        if action not in ('expose', 'hide'):
            raise bad_request('action: must be "expose" or "hide".')
        with self.transaction() as tx:
            sid = self.superevent_row(superevent_id, tx.db)['superevent_id']
            if action == 'expose':
                for group, permission in EXPOSED_PERMISSIONS:
                    tx.db.execute('INSERT OR IGNORE INTO permissions '
                                  '(superevent, grp, permission) VALUES '
                                  '(?, ?, ?)', (sid, group, permission))
                self.add_log(tx, sid, 'Exposed superevent to the public',
                             submitter)
            else:
                tx.db.execute('DELETE FROM permissions WHERE superevent = ?',
                              (sid,))
                self.add_log(tx, sid, 'Hid superevent from the public',
                             submitter)
            permissions = [
                {'group': row['grp'], 'permission': row['permission']}
                for row in tx.db.execute(
                    'SELECT * FROM permissions WHERE superevent = ? '
                    'ORDER BY rowid', (sid,))]
            self.alert_object(tx, sid, 'exposed' if action == 'expose'
                              else 'hidden', permissions)
            return permissions

    # --- VOEvents -----------------------------------------------------------

    def voevents(self, object_id):
        obj = self.object_key(object_id)
        return [self.voevent_dict(row) for row in self.db.execute(
            'SELECT * FROM voevents WHERE obj = ? ORDER BY n', (obj,))]

    def get_voevent(self, object_id, n):
        obj = self.object_key(object_id)
        row = self.db.execute('SELECT * FROM voevents WHERE obj = ? AND '
                              'n = ?', (obj, _int(n, 'N'))).fetchone()
        if row is None:
            raise not_found(f'VOEvent {n} does not exist.')
        return self.voevent_dict(row)

    def create_voevent(self, object_id, fields, issuer):
        """Create a VOEvent record and its XML file; return the record."""
        voevent_type = fields.get('voevent_type')
        if voevent_type not in VOEVENT_TYPES:
            raise bad_request(f'voevent_type: "{voevent_type}" is not a '
                              'valid choice.')
        skymap_type = fields.get('skymap_type') or None
        skymap_filename = fields.get('skymap_filename') or None
        if voevent_type in ('IN', 'UP') and not (skymap_type and
                                                 skymap_filename):
            raise bad_request('Skymap filename and type must be provided '
                              f'for {VOEVENT_TYPES[voevent_type]} VOEvents')
        if bool(skymap_type) != bool(skymap_filename):
            raise bad_request('Skymap filename and type must both be '
                              'provided or both be omitted')
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            if is_event_id(obj):
                event = self.event_row(obj, tx.db)
                subject = None
            else:
                subject = self.superevent_row(obj, tx.db)
                event = self.event_row(subject['preferred_event'], tx.db)
            if event['gpstime'] is None:
                raise bad_request('Cannot build a VOEvent for an event '
                                  'without a gpstime')
            if subject is None and event['far'] is None:
                raise bad_request('Cannot build a VOEvent for an event '
                                  'without a FAR')
            if skymap_filename:
                try:
                    self.file_path(obj, skymap_filename)
                except ApiError:
                    raise bad_request(f'Skymap file {skymap_filename} does '
                                      f'not exist for {obj}') from None
            n = tx.db.execute('SELECT COALESCE(MAX(n), 0) + 1 FROM voevents '
                              'WHERE obj = ?', (obj,)).fetchone()[0]
            type_name = VOEVENT_FILE_TYPES[voevent_type]
            filename = f'{obj}-{n}-{type_name}.xml'
            record = _voevent_record(fields, voevent_type, n, filename, issuer,
                                     tx.now, raven=subject is not None)
            record['ivorn'] = f'ivo://gwnet/LVC#{obj}-{n}-{type_name}'
            xml = build_voevent(
                record, self.event_dict(event, tx.db),
                obj, self.api_root, subject=None if subject is None
                else self.superevent_dict(subject, tx.db))
            log_row = self.add_log(tx, obj, 'New VOEvent', issuer, filename,
                                   xml, tags=['em_follow'])
            record['file_version'] = log_row['file_version']
            tx.db.execute('INSERT INTO voevents (obj, n, fields) VALUES '
                          '(?, ?, ?)', (obj, n, json.dumps(record)))
            row = tx.db.execute('SELECT * FROM voevents WHERE obj = ? AND '
                                'n = ?', (obj, n)).fetchone()
            voevent = self.voevent_dict(row)
            self.alert_object(tx, obj, 'voevent', voevent)
            return voevent

    # --- searches -----------------------------------------------------------

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
        order = []
        for field in filter(None, (f.strip() for f in sort.split(','))):
            descending = field.startswith('-')
            column = sort_columns.get(field.lstrip('-+'))
            if column is None:
                raise bad_request(f'Invalid sort field: {field}')
            order.append(f"{column} {'DESC' if descending else 'ASC'}")
        order.append(f'{table}.id ASC')
        db = self.db
        try:
            total = db.execute(f'SELECT COUNT(*) FROM {table} WHERE {where}',
                               params).fetchone()[0]
            rows = db.execute(
                f'SELECT * FROM {table} WHERE {where} ORDER BY '
                f"{', '.join(order)} LIMIT ? OFFSET ?",
                (*params, count, start)).fetchall()
        except sqlite3.Error as exc:
            raise bad_request(f'Invalid query: {exc}') from None
        return [serialize(row, db) for row in rows], total

    # --- outbox (read by the alert publishers) ------------------------------

    def pending_alerts(self, db, after, limit=100):
        return db.execute('SELECT id, node, message FROM outbox WHERE id > ? '
                          'ORDER BY id LIMIT ?', (after, limit)).fetchall()

    def alert_cursor(self, db, name):
        """Register the active transport ``name``; return the last outbox id
        it published. A new transport starts at the current end (it does
        not replay history)."""
        with self.write_lock:
            self.active_transports.add(name)
            row = db.execute('SELECT last_id FROM alert_cursors WHERE '
                             'name = ?', (name,)).fetchone()
            if row is not None:
                return row[0]
            last = db.execute('SELECT COALESCE(MAX(id), 0) FROM outbox'
                              ).fetchone()[0]
            db.execute('INSERT INTO alert_cursors (name, last_id) VALUES '
                       '(?, ?)', (name, last))
            return last

    def release_alert_cursor(self, name):
        """Unregister the transport ``name`` (its cursor stays on disk)."""
        with self.write_lock:
            self.active_transports.discard(name)

    def advance_alert_cursor(self, db, name, last_id):
        """Record that ``name`` published up to ``last_id``; forget the
        alerts that every active transport has published."""
        with self.write_lock:
            db.execute('UPDATE alert_cursors SET last_id = ? WHERE name = ?',
                       (last_id, name))
            active = sorted(self.active_transports)
            db.execute(
                'DELETE FROM outbox WHERE id <= (SELECT MIN(last_id) FROM '
                f"alert_cursors WHERE name IN ({', '.join('?' * len(active))}"
                '))', active)


def _int(value, name):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise not_found(f'{name} {value} does not exist.') from None


def _category_code(value):
    for code, name in CATEGORIES.items():
        if str(value).lower() in (code.lower(), name.lower()):
            return code
    raise bad_request(f'category: "{value}" is not a valid choice.')


def _optional_float(value):
    if value is None or value == '':
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_request(f'A valid number is required, not {value!r}') \
            from None


def _voevent_record(fields, voevent_type, n, filename, issuer, now, raven):
    record = {
        'voevent_type': voevent_type,
        'file_version': None,
        'ivorn': None,
        'created': format_time(now),
        'issuer': issuer,
        'filename': filename,
        'N': n,
        'skymap_type': fields.get('skymap_type') or None,
        'skymap_filename': fields.get('skymap_filename') or None,
        'internal': to_bool(fields.get('internal', True)),
        'open_alert': to_bool(fields.get('open_alert', False)),
        'hardware_inj': to_bool(fields.get('hardware_inj', False)),
        'coinc_comment': to_bool(fields.get('CoincComment', False)),
        'prob_has_ns': _optional_float(fields.get('ProbHasNS')),
        'prob_has_remnant': _optional_float(fields.get('ProbHasRemnant')),
        'prob_bns': _optional_float(fields.get('BNS')),
        'prob_nsbh': _optional_float(fields.get('NSBH')),
        'prob_bbh': _optional_float(fields.get('BBH')),
        'prob_terrestrial': _optional_float(fields.get('Terrestrial')),
        'prob_mass_gap': _optional_float(fields.get('HasMassGap')),
    }
    if raven:
        record.update({
            'raven_coinc': to_bool(fields.get('raven_coinc', False)),
            'combined_skymap_filename':
                fields.get('combined_skymap_filename') or None,
            'ext_gcn': fields.get('ext_gcn') or None,
            'ext_pipeline': fields.get('ext_pipeline') or None,
            'ext_search': fields.get('ext_search') or None,
            'time_coinc_far': _optional_float(fields.get('time_coinc_far')),
            'space_coinc_far': _optional_float(fields.get('space_coinc_far')),
        })
    return record
