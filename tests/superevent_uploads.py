"""Event files for the superevent tests and benchmark.

CBC candidates are copies of the real ``coinc.xml`` (``tests/data/gracedb``)
with their time, FAR and SNR changed; cWB candidates are the JSON documents
the local GraceDB server reads for any pipeline.
"""

import functools
import io
import json
import os

from igwn_ligolw import ligolw, lsctables, utils
from lal import LIGOTimeGPS
from ligo.skymap.util import ilwd

COINC_XML = os.path.join(os.path.dirname(__file__), 'data', 'gracedb',
                         'coinc.xml')


@ilwd.use_in
class _ContentHandler(ligolw.LIGOLWContentHandler):
    """Reads the old ``ilwd:char`` ids of the real coinc.xml."""


@functools.cache
def _template():
    with open(COINC_XML, 'rb') as f:
        document = utils.load_fileobj(f, contenthandler=_ContentHandler)
    coinc, = lsctables.CoincInspiralTable.get_table(document)
    singles = lsctables.SnglInspiralTable.get_table(document)
    return document, coinc, singles, coinc.end, [row.end for row in singles]


def coinc_xml(gpstime, far, snr):
    """Return a ``coinc.xml`` (bytes) of a three-detector CBC candidate at
    ``gpstime`` with the given FAR (Hz) and network SNR."""
    document, coinc, singles, coinc_end, single_ends = _template()
    offset = LIGOTimeGPS(gpstime) - coinc_end
    coinc.end = coinc_end + offset
    coinc.combined_far = coinc.false_alarm_rate = far
    coinc.snr = snr
    for row, end in zip(singles, single_ends, strict=True):
        row.end = end + offset
    out = io.BytesIO()
    utils.write_fileobj(document, out)
    return out.getvalue()


def cwb_json(gpstime, far, duration=0.1, snr=10.0, instruments='H1,L1'):
    """Return the event file (JSON bytes) of a cWB candidate."""
    return json.dumps({
        'gpstime': gpstime, 'far': far, 'instruments': instruments,
        'extra_attributes': {'MultiBurst': {
            'ifos': instruments, 'duration': duration, 'snr': snr,
            'central_freq': 100.0}}}).encode()
