"""The local GraceDB server's coinc.xml reader against igwn-ligolw's own,
fully checked, reading of the same file."""

import os

import pytest
from igwn_ligolw import ligolw, lsctables, utils
from ligo.skymap.util import ilwd

from gwcelery.gracedb_server import parsers

from .conftest import DATA_DIR

COINC = os.path.join(DATA_DIR, 'gracedb', 'coinc.xml')
SNGL_COLUMN = '<Column Type="lstring" Name="sngl_inspiral:ifo"/>'


@pytest.fixture(scope='module')
def coinc_text():
    with open(COINC) as f:
        return f.read()


@ilwd.use_in
class FullyCheckedContentHandler(ligolw.LIGOLWContentHandler):
    pass


def test_reads_what_igwn_ligolw_reads(coinc_text):
    fields = parsers.parse_event_file(coinc_text.encode(), 'CBC', 'gstlal')
    document = utils.load_filename(
        COINC, contenthandler=FullyCheckedContentHandler)
    coinc_inspiral, = lsctables.CoincInspiralTable.get_table(document)
    singles = lsctables.SnglInspiralTable.get_table(document)
    assert fields['gpstime'] == pytest.approx(
        float(coinc_inspiral.end), abs=1e-6)
    assert fields['far'] == coinc_inspiral.combined_far
    attributes = fields['extra_attributes']
    assert attributes['CoincInspiral']['snr'] == coinc_inspiral.snr
    assert [single['snr'] for single in attributes['SingleInspiral']] == [
        row.snr for row in singles]
    assert [single['mass1'] for single in attributes['SingleInspiral']] == [
        row.mass1 for row in singles]


@pytest.mark.parametrize('column,reason', [
    (SNGL_COLUMN, 'duplicate Column'),
    ('<Column Type="real_8" Name="sngl_inspiral:no_such_column"/>', ''),
    ('<Column Type="no_such_type" Name="sngl_inspiral:no_such_column"/>',
     ''),
    ('<Comment>after a column</Comment>', 'Comment must come before'),
])
def test_a_table_with_a_bad_column_is_malformed(coinc_text, column, reason):
    assert coinc_text.count(SNGL_COLUMN) == 1
    bad = coinc_text.replace(SNGL_COLUMN, SNGL_COLUMN + column)
    with pytest.raises(parsers.EventFileError,
                       match='Malformed coinc.xml.*' + reason):
        parsers.parse_event_file(bad.encode(), 'CBC', 'gstlal')
