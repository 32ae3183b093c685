"""What every change writes to an object's record: log messages with their
files, and labels (each applied or removed label is logged and alerted).

The resource operations (:mod:`.logs`, :mod:`.labels`, :mod:`.events`,
...) build on these primitives, each inside its own transaction.
"""

import os
import uuid

from ..errors import bad_request, not_found
from ..vocabulary import LABELS
from .objects import ObjectModel, is_event_id


def check_label_name(name):
    """400 unless ``name`` is a label the server knows."""
    if name not in LABELS:
        raise bad_request(f'Label {name} does not exist',
                          f'Label {name} does not exist')


class Journal(ObjectModel):
    """Log messages, files and labels written inside a transaction ``tx``
    (:class:`.database.Transaction`)."""

    def _write_file(self, tx, obj, name, contents):
        """Store the next version of the file ``name``; return its
        version."""
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

    def apply_label(self, tx, obj, name, creator):
        """Apply a label; return its row, or ``None`` if already applied."""
        check_label_name(name)
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

    def withdraw_label(self, tx, obj, name, issuer):
        """Remove an applied label; 404 if it is not applied."""
        row = tx.db.execute('SELECT * FROM labels WHERE obj = ? AND name = ?',
                            (obj, name)).fetchone()
        if row is None:
            raise not_found(f'Label {name} is not applied to {obj}.')
        data = self.label_dict(row)
        tx.db.execute('DELETE FROM labels WHERE obj = ? AND name = ?',
                      (obj, name))
        self.add_log(tx, obj, f'Removed label: {name}', issuer)
        self.alert_object(tx, obj, 'label_removed', data)
