"""Events: created and replaced from an uploaded file, and the GRB
attributes of external events patched."""

import json
import uuid

from ..errors import bad_request
from ..identifiers import event_category, event_prefix, format_graceid
from ..parsers import EventFileError, parse_event_file
from ..vocabulary import GROUPS, PIPELINES, SEARCHES
from .journal import Journal, check_label_name


def _read_event_file(contents, group, pipeline):
    """The event fields of an uploaded file; 400 if it cannot be read."""
    try:
        return parse_event_file(contents, group, pipeline)
    except EventFileError as exc:
        raise bad_request(str(exc)) from None


class Events(Journal):
    """Operations on events."""

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
            check_label_name(label)
        if contents is None:
            raise bad_request('eventFile: No file was submitted.')
        fields = _read_event_file(contents, group, pipeline)
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
                self.apply_label(tx, graceid, label, submitter)
            return self.event_dict(self.event_row(graceid, tx.db), tx.db)

    def replace_event(self, graceid, filename, contents, submitter):
        """Replace an event's data from a new upload (PUT)."""
        if contents is None:
            raise bad_request('eventFile: No file was submitted.')
        row = self.event_row(graceid)
        fields = _read_event_file(contents, row['grp'], row['pipeline'])
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
        """One event; 404 if there is none."""
        return self.event_dict(self.event_row(graceid))
