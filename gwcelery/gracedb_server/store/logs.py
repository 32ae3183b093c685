"""Log messages, the files uploaded with them, and their tags, on events
and superevents alike."""

from ..errors import bad_request, not_found
from .journal import Journal, check_label_name
from .objects import sequence_number


class Logs(Journal):
    """The log of an object, its files and the tags of its messages."""

    def create_log(self, object_id, comment, issuer, filename=None,
                   contents=None, tags=(), display_names=(), label=None):
        """POST a log message (optionally with a file and a label)."""
        if label is not None:
            check_label_name(label)
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            row = self.add_log(tx, obj, comment, issuer, filename, contents,
                               tags, display_names)
            entry = self.log_dict(row, tx.db)
            self.alert_object(tx, obj, 'log', entry)
            if label is not None:
                self.apply_label(tx, obj, label, issuer)
        return entry

    def logs(self, object_id):
        """The log messages of an object, oldest first."""
        obj = self.object_key(object_id)
        return [self.log_dict(row) for row in self.db.execute(
            'SELECT * FROM logs WHERE obj = ? ORDER BY n', (obj,))]

    def log_row(self, obj, n, db=None):
        """The row of log message ``n`` of ``obj``; 404 if none."""
        row = (db or self.db).execute(
            'SELECT * FROM logs WHERE obj = ? AND n = ?',
            (obj, sequence_number(n, 'N'))).fetchone()
        if row is None:
            raise not_found(f'Log message {n} does not exist.')
        return row

    def get_log(self, object_id, n):
        """Log message ``n`` of an object."""
        return self.log_dict(self.log_row(self.object_key(object_id), n))

    # --- files --------------------------------------------------------------

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

    # --- tags -------------------------------------------------------------

    def tags(self, object_id, n):
        """The tags of log message ``n`` of an object."""
        obj = self.object_key(object_id)
        self.log_row(obj, n)
        return [self.tag_dict(row) for row in self.db.execute(
            'SELECT * FROM tags WHERE obj = ? AND n = ? ORDER BY rowid',
            (obj, sequence_number(n, 'N')))]

    def add_tag(self, object_id, n, name, display_name, issuer):
        """Tag log message ``n``; 400 if it already has the tag."""
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
        """Take a tag off log message ``n``; 404 if it does not have it."""
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
