"""Superevents: creation, parameters, member events, pipeline-preferred
events and confirmation as a GW."""

from ..errors import bad_request, not_found
from ..identifiers import (
    CATEGORIES,
    GW_ID_RE,
    format_gw_id,
    format_superevent_id,
    superevent_date,
)
from .journal import Journal, check_label_name

#: Parameters of a superevent that a PATCH may change, in the order its
#: log message lists them (``preferred_event`` comes last).
UPDATABLE_PARAMETERS = ('t_start', 't_0', 't_end', 'time_coinc_far',
                        'space_coinc_far', 'em_type')

INVALID_TIMES = 't_start, t_0, t_end: t_start <= t_0 <= t_end is required.'

EXTERNAL_PREFERRED = ('An external event cannot be the preferred event of a '
                      'superevent.')


class Superevents(Journal):
    """Operations on superevents and their members."""

    def _check_event_for_superevent(self, db, graceid, category):
        """The row of an event that may join a superevent of
        ``category``; 400 if it is in one already or of another
        category."""
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
        """Create a superevent of ``category`` (a code: ``P``, ``T`` or
        ``M``) around the times ``t_start <= t_0 <= t_end``; return it."""
        if not t_start <= t_0 <= t_end:
            raise bad_request(INVALID_TIMES)
        try:
            date = superevent_date(t_0)
        except ValueError as exc:
            raise bad_request(f't_0: {exc}') from None
        for label in labels:
            check_label_name(label)
        with self.transaction() as tx:
            preferred = self._check_event_for_superevent(
                tx.db, preferred_event, category)
            if preferred['grp'] == 'External':
                raise bad_request(EXTERNAL_PREFERRED)
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
                self.apply_label(tx, sid, label, submitter)
            for graceid in members:
                self.add_log(tx, graceid, f'Added to superevent: {sid}',
                             submitter)
                self.alert_object(tx, graceid, 'added_to_superevent')
            self._select_preferred(tx, sid, preferred['graceid'], submitter)
            return self.superevent_dict(self.superevent_row(sid, tx.db),
                                        tx.db)

    def _select_preferred(self, tx, sid, graceid, submitter):
        self.add_log(tx, graceid,
                     f'Set as preferred event for superevent: {sid}',
                     submitter)
        self.alert_object(tx, graceid, 'selected_as_preferred')

    def update_superevent(self, superevent_id, values, submitter):
        """PATCH a superevent's parameters: ``values`` holds those of
        :data:`UPDATABLE_PARAMETERS` and ``preferred_event`` that the
        request gives; 400 if none of them changes."""
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            sid = row['superevent_id']
            changes = {key: values[key] for key in UPDATABLE_PARAMETERS
                       if key in values and values[key] != row[key]}
            new_preferred = None
            if values.get('preferred_event'):
                new_preferred = self.event_row(values['preferred_event'],
                                               tx.db)
                if new_preferred['graceid'] != row['preferred_event']:
                    if new_preferred['grp'] == 'External':
                        raise bad_request(EXTERNAL_PREFERRED)
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
                raise bad_request(INVALID_TIMES)
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
                self._select_preferred(tx, sid, new_preferred['graceid'],
                                       submitter)
            return self.superevent_dict(self.superevent_row(sid, tx.db),
                                        tx.db)

    def get_superevent(self, superevent_id):
        """One superevent, by its id or GW id; 404 if there is none."""
        return self.superevent_dict(self.superevent_row(superevent_id))

    def superevent_events(self, superevent_id):
        """The graceids of the members of a superevent, oldest first."""
        sid = self.superevent_key(superevent_id)
        return [row['graceid'] for row in self.db.execute(
            'SELECT graceid FROM events WHERE superevent = ? ORDER BY id',
            (sid,))]

    def add_event(self, superevent_id, graceid, submitter):
        """Add an event to a superevent; return its graceid."""
        with self.transaction() as tx:
            row = self.superevent_row(superevent_id, tx.db)
            event = self._check_event_for_superevent(tx.db, graceid,
                                                     row['category'])
            self._add_member(tx, row['superevent_id'], event, submitter)
            return event['graceid']

    def remove_event(self, superevent_id, graceid, submitter):
        """Remove an event (not the preferred one) from a superevent."""
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
        """The graceids of the pipeline-preferred events of a
        superevent."""
        sid = self.superevent_key(superevent_id)
        return [row['graceid'] for row in self.db.execute(
            'SELECT graceid FROM pipeline_preferred WHERE superevent = ? '
            'ORDER BY rowid', (sid,))]

    def add_pipeline_preferred(self, superevent_id, graceid, submitter):
        """Make a member its pipeline's preferred event of a superevent;
        return its graceid."""
        with self.transaction() as tx:
            sid = self.superevent_key(superevent_id, tx.db)
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
        """Take an event off the pipeline-preferred events; 404 if it is
        not one."""
        with self.transaction() as tx:
            sid = self.superevent_key(superevent_id, tx.db)
            event = self.event_row(graceid, tx.db)
            if not tx.db.execute(
                    'DELETE FROM pipeline_preferred WHERE superevent = ? AND '
                    'graceid = ?', (sid, event['graceid'])).rowcount:
                raise not_found(f"Event {event['graceid']} is not a pipeline "
                                f'preferred event of {sid}.')
            self.add_log(tx, sid, 'Removed pipeline preferred event: '
                         f"{event['graceid']}", submitter)

    def confirm_as_gw(self, superevent_id, gw_id, submitter):
        """Confirm a superevent as a GW (with the next GW id of its date
        unless ``gw_id`` is given); return it."""
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
