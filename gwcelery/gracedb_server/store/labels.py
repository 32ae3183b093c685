"""Labels of events and superevents."""

from ..errors import bad_request, not_found
from .journal import Journal


class Labels(Journal):
    """Listing, applying and removing labels."""

    def labels(self, object_id):
        """The labels of an object, in the order applied."""
        obj = self.object_key(object_id)
        return [self.label_dict(row) for row in self.db.execute(
            'SELECT * FROM labels WHERE obj = ? ORDER BY rowid', (obj,))]

    def get_label(self, object_id, name):
        """One label of an object; 404 if it is not applied."""
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
            row = self.apply_label(tx, obj, name, creator)
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
        """Remove a label; 404 if it is not applied."""
        with self.transaction() as tx:
            obj = self.object_key(object_id, tx.db)
            self.withdraw_label(tx, obj, name, issuer)
