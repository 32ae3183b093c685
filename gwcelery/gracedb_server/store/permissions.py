"""Permissions of superevents: exposed to the public or hidden."""

from ..errors import bad_request
from ..vocabulary import EXPOSED_PERMISSIONS
from .journal import Journal


class Permissions(Journal):
    """Listing and changing who may see a superevent."""

    def _permission_list(self, db, sid):
        return [{'group': row['grp'], 'permission': row['permission']}
                for row in db.execute(
                    'SELECT * FROM permissions WHERE superevent = ? '
                    'ORDER BY rowid', (sid,))]

    def permissions(self, superevent_id):
        """The permissions granted on a superevent."""
        return self._permission_list(self.db,
                                     self.superevent_key(superevent_id))

    def modify_permissions(self, superevent_id, action, submitter):
        """``expose`` a superevent to the public or ``hide`` it; return its
        permissions."""
        if action not in ('expose', 'hide'):
            raise bad_request('action: must be "expose" or "hide".')
        with self.transaction() as tx:
            sid = self.superevent_key(superevent_id, tx.db)
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
            permissions = self._permission_list(tx.db, sid)
            self.alert_object(tx, sid, 'exposed' if action == 'expose'
                              else 'hidden', permissions)
            return permissions
