"""Signoffs of superevents: an advocate's, or an operator's per
instrument, each answering a request label and leaving a result label."""

from ..errors import bad_request, not_found
from ..vocabulary import INSTRUMENTS, SIGNOFF_STATUSES, SIGNOFF_TYPES
from .journal import Journal

#: Labels that request a signoff, by signoff key (instrument or '').
SIGNOFF_REQUEST_LABELS = {'': 'ADVREQ', 'H1': 'H1OPS', 'L1': 'L1OPS',
                          'V1': 'V1OPS'}


def signoff_instrument(signoff_type, instrument):
    """The instrument a signoff is keyed by (``''`` for the advocate's);
    400 for an unknown type or an operator signoff without instrument."""
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


def check_status(status):
    """400 unless ``status`` is a signoff status."""
    if status not in SIGNOFF_STATUSES:
        raise bad_request(f'status: "{status}" is not a valid choice.')


def result_label(instrument, status):
    """The label a signoff leaves, e.g. ``ADVOK`` or ``H1NO``."""
    return f"{instrument or 'ADV'}{status}"


class Signoffs(Journal):
    """Creating, changing and deleting signoffs."""

    def signoffs(self, superevent_id):
        """The signoffs of a superevent."""
        sid = self.superevent_key(superevent_id)
        return [self.signoff_dict(row) for row in self.db.execute(
            'SELECT * FROM signoffs WHERE superevent = ? ORDER BY rowid',
            (sid,))]

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
        """The signoff ``typeinst`` (``ADV``, ``OPH1``, ...)."""
        sid = self.superevent_key(superevent_id)
        return self.signoff_dict(self._signoff_row(self.db, sid, typeinst))

    def create_signoff(self, superevent_id, signoff_type, instrument, status,
                       comment, submitter):
        """Sign off a superevent whose request label is applied: the
        request label gives way to the result label."""
        instrument = signoff_instrument(signoff_type, instrument)
        check_status(status)
        with self.transaction() as tx:
            sid = self.superevent_key(superevent_id, tx.db)
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
            self.withdraw_label(tx, sid, request_label, submitter)
            self.apply_label(tx, sid, result_label(instrument, status),
                             submitter)
            return self.signoff_dict(row)

    def update_signoff(self, superevent_id, typeinst, status, comment,
                       submitter):
        """Change the status or comment of a signoff (and so its result
        label)."""
        with self.transaction() as tx:
            sid = self.superevent_key(superevent_id, tx.db)
            row = self._signoff_row(tx.db, sid, typeinst)
            new_status = status or row['status']
            check_status(new_status)
            new_comment = row['comment'] if comment is None else comment
            tx.db.execute('UPDATE signoffs SET status = ?, comment = ? '
                          'WHERE superevent = ? AND instrument = ?',
                          (new_status, new_comment, sid, row['instrument']))
            if new_status != row['status']:
                self._withdraw_result_label(tx, sid, row, submitter)
                self.apply_label(tx, sid, result_label(
                    row['instrument'], new_status), submitter)
            row = self._signoff_row(tx.db, sid, typeinst)
            self.add_log(tx, sid, f'Signoff updated: {typeinst} {new_status}'
                         f': {new_comment}', submitter)
            self.alert_object(tx, sid, 'signoff_updated',
                              self.signoff_dict(row))
            return self.signoff_dict(row)

    def delete_signoff(self, superevent_id, typeinst, submitter):
        """Delete a signoff: its result label gives way to the request
        label again."""
        with self.transaction() as tx:
            sid = self.superevent_key(superevent_id, tx.db)
            row = self._signoff_row(tx.db, sid, typeinst)
            data = self.signoff_dict(row)
            tx.db.execute('DELETE FROM signoffs WHERE superevent = ? AND '
                          'instrument = ?', (sid, row['instrument']))
            self.add_log(tx, sid, f'Signoff deleted: {typeinst}', submitter)
            self.alert_object(tx, sid, 'signoff_deleted', data)
            self._withdraw_result_label(tx, sid, row, submitter)
            self.apply_label(tx, sid,
                             SIGNOFF_REQUEST_LABELS[row['instrument']],
                             submitter)

    def _withdraw_result_label(self, tx, sid, signoff_row, submitter):
        """Remove the result label of a signoff as it was, if applied."""
        label = result_label(signoff_row['instrument'], signoff_row['status'])
        if label in self.label_names(sid, tx.db):
            self.withdraw_label(tx, sid, label, submitter)
