"""The SQLite database: schema, pooled connections, write transactions and
the alert outbox.

Every change runs in one SQLite transaction (:meth:`Database.transaction`)
under a process-wide write lock; the alerts a change causes are written to
the ``outbox`` table in the same transaction and published by
:mod:`gwcelery.gracedb_server.alerts` only once it has been committed.
"""

import contextlib
import json
import os
import queue
import sqlite3
import threading
import time

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


class Transaction:
    """One write transaction: its connection, the files written in it and a
    way to queue alerts."""

    def __init__(self, database, connection):
        self.database = database
        self.db = connection
        self.new_files = []
        self.alert_count = 0
        self.now = time.time()

    def alert(self, nodes, uid, alert_type, data, obj):
        """Queue an LVAlert message for publication after the commit (if
        any alert transport is active)."""
        if not self.database.active_transports:
            return
        message = json.dumps({'uid': uid, 'alert_type': alert_type,
                              'data': data, 'object': obj})
        for node in nodes:
            self.db.execute('INSERT INTO outbox (node, message) VALUES (?, ?)',
                            (node, message))
            self.alert_count += 1


class Database:
    """The SQLite database ``gracedb.sqlite3`` and the ``files/`` directory
    under ``data_dir``."""

    def __init__(self, data_dir):
        self.data_dir = os.path.abspath(data_dir)
        self.files_dir = os.path.join(self.data_dir, 'files')
        os.makedirs(self.files_dir, exist_ok=True)
        self.path = os.path.join(self.data_dir, 'gracedb.sqlite3')
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

    # --- outbox (read by the alert publishers) ------------------------------

    def pending_alerts(self, db, after, limit=100):
        """Up to ``limit`` outbox rows (``id``, ``node``, ``message``) after
        the id ``after``, in commit order."""
        return db.execute('SELECT id, node, message FROM outbox WHERE id > ? '
                          'ORDER BY id LIMIT ?', (after, limit)).fetchall()

    def last_alert_id(self, db=None):
        """The id of the last alert committed to the outbox (0 if none)."""
        return (db or self.db).execute(
            'SELECT COALESCE(MAX(id), 0) FROM outbox').fetchone()[0]

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
            last = self.last_alert_id(db)
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
