"""VOEvents of events and superevents: a record, and the XML file written
in the LVK notice format and logged with the tag ``em_follow``."""

import json

from ..errors import ApiError, bad_request, not_found
from ..vocabulary import VOEVENT_FILE_TYPES, VOEVENT_TYPES
from ..voevent import build_voevent
from .journal import Journal
from .objects import format_time, is_event_id, sequence_number


class VOEvents(Journal):
    """Listing and creating VOEvents."""

    def voevents(self, object_id):
        """The VOEvents of an object, oldest first."""
        obj = self.object_key(object_id)
        return [self.voevent_dict(row) for row in self.db.execute(
            'SELECT * FROM voevents WHERE obj = ? ORDER BY n', (obj,))]

    def get_voevent(self, object_id, n):
        """VOEvent ``n`` of an object."""
        obj = self.object_key(object_id)
        row = self.db.execute('SELECT * FROM voevents WHERE obj = ? AND '
                              'n = ?', (obj, sequence_number(n, 'N'))
                              ).fetchone()
        if row is None:
            raise not_found(f'VOEvent {n} does not exist.')
        return self.voevent_dict(row)

    def create_voevent(self, object_id, voevent_type, options, issuer):
        """Create a VOEvent record and its XML file; return the record.

        ``options`` are the record's other fields as the request gives
        them (``skymap_filename``, ``internal``, ``prob_bns``, ...).
        """
        if voevent_type not in VOEVENT_TYPES:
            raise bad_request(f'voevent_type: "{voevent_type}" is not a '
                              'valid choice.')
        skymap_type = options['skymap_type']
        skymap_filename = options['skymap_filename']
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
            record = {
                'voevent_type': voevent_type,
                'file_version': None,
                'ivorn': f'ivo://gwnet/LVC#{obj}-{n}-{type_name}',
                'created': format_time(tx.now),
                'issuer': issuer,
                'filename': filename,
                'N': n,
                **options,
            }
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
