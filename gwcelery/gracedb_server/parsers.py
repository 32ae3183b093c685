"""Read the uploaded event file into event fields and ``extra_attributes``.

* CBC pipelines upload a LIGO-LW ``coinc.xml`` (optionally gzipped), read
  with the LIGO-LW library that ligo.skymap uses.
* External triggers upload the GCN VOEvent (XML) or a JSON document.
* Any pipeline may upload a JSON document: the event fields (``gpstime``,
  ``far``, ``instruments``, ``nevents``, ``likelihood``,
  ``far_is_upper_limit``) at top level and an ``extra_attributes`` object.

Every failure raises :class:`EventFileError` with a message for the client.
"""

import datetime
import gzip
import io
import json
import math

from lxml import etree

from .identifiers import utc_to_gps
from .vocabulary import CBC_PIPELINES, EXTERNAL_PIPELINES

EVENT_FIELDS = ('gpstime', 'far', 'instruments', 'nevents', 'likelihood',
                'far_is_upper_limit')

#: Columns of ``coinc_inspiral`` reported in ``CoincInspiral``.
COINC_INSPIRAL_COLUMNS = ('ifos', 'end_time', 'end_time_ns', 'mass', 'mchirp',
                          'minimum_duration', 'snr', 'false_alarm_rate',
                          'combined_far')

#: ``sngl_inspiral`` columns that are row ids, not attributes.
SNGL_INSPIRAL_ID_COLUMNS = ('process_id', 'event_id')

#: Keys of ``extra_attributes.GRB`` for external triggers.
GRB_KEYS = ('ivorn', 'author_ivorn', 'author_shortname',
            'observatory_location_id', 'coord_system', 'ra', 'dec',
            'error_radius', 'how_description', 'how_reference_url', 'T90',
            'trigger_duration', 'designation', 'redshift', 'trigger_id')


class EventFileError(ValueError):
    """The uploaded event file cannot be read."""


def parse_event_file(data, group, pipeline):
    """Return the event fields (a dict with ``extra_attributes``) read from
    the uploaded bytes ``data`` of an event of ``group``/``pipeline``."""
    if data[:2] == b'\x1f\x8b':
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise EventFileError(f'Bad gzip data: {exc}') from None
    head = data.lstrip()[:1]
    if head in (b'{', b'['):
        fields = _parse_json(data, group)
    elif head == b'<':
        if group == 'External' or pipeline in EXTERNAL_PIPELINES:
            fields = _parse_gcn_voevent(data)
        elif group == 'Test' or pipeline in CBC_PIPELINES or group == 'CBC':
            fields = _parse_coinc(data)
        else:
            raise EventFileError(
                f'XML event files are read for CBC pipelines and external '
                f'triggers only; upload JSON for pipeline {pipeline}')
    else:
        raise EventFileError(
            'Unrecognised event file: expected a LIGO-LW coinc.xml, a '
            'VOEvent (external triggers) or a JSON document')
    gpstime = fields.get('gpstime')
    if gpstime is None or not math.isfinite(gpstime):
        raise EventFileError('The event file gives no GPS time')
    fields['gpstime'] = round(float(gpstime), 6)
    return fields


def _number(value, name):
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EventFileError(f'{name} must be a number, not {value!r}') \
            from None
    if math.isnan(number):
        return None
    return number


def _parse_json(data, group):
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventFileError(f'Malformed JSON event file: {exc}') from None
    if not isinstance(document, dict):
        raise EventFileError('A JSON event file must be an object')
    extra = document.get('extra_attributes') or {}
    if not isinstance(extra, dict):
        raise EventFileError('extra_attributes must be an object')
    if group == 'External':
        grb = {key: document[key] for key in GRB_KEYS if key in document}
        if grb:
            extra = {**extra, 'GRB': {**dict.fromkeys(GRB_KEYS),
                                      **extra.get('GRB', {}), **grb}}
    instruments = document.get('instruments') or ''
    if isinstance(instruments, (list, tuple)):
        instruments = ','.join(instruments)
    nevents = document.get('nevents')
    return {
        'gpstime': _number(document.get('gpstime'), 'gpstime'),
        'far': _number(document.get('far'), 'far'),
        'instruments': str(instruments),
        'nevents': None if nevents is None else int(_number(nevents,
                                                            'nevents')),
        'likelihood': _number(document.get('likelihood'), 'likelihood'),
        'far_is_upper_limit': bool(document.get('far_is_upper_limit', False)),
        'extra_attributes': extra,
    }


#: The LIGO-LW tables read from a coinc.xml (the others are skipped).
COINC_TABLES = ('coinc_inspiral', 'coinc_event', 'sngl_inspiral')


def _coinc_content_handler():
    from igwn_ligolw import ligolw
    from ligo.skymap.util import ilwd

    def wanted(name, attrs):
        return (name == ligolw.Table.tagName
                and ligolw.Table.TableName(attrs['Name']) in COINC_TABLES)

    def check_all_but_columns(table):
        def verify_child(i):
            if table.childNodes[i].tagName != ligolw.Column.tagName:
                type(table)._verifyChildren(table, i)
        return verify_child

    @ilwd.use_in
    class ContentHandler(ligolw.PartialLIGOLWContentHandler):
        """Read only the coinc tables; accept old ``ilwd:char`` ids.

        igwn-ligolw checks all of a table's columns each time one is
        added, in O(n² log n) (a FIXME of its own): for the ~80 columns
        of a sngl_inspiral table, more than half of the parse. Here the
        check runs once, on the last column, which covers the
        duplicates; a column of an unknown name or type still fails when
        the rows are read.
        """

        def __init__(self, document):
            super().__init__(document, wanted)

        def startTable(self, parent, attrs):
            table = super().startTable(parent, attrs)
            table._verifyChildren = check_all_but_columns(table)
            return table

        def startStream(self, parent, attrs):
            if parent.tagName == ligolw.Table.tagName:
                del parent._verifyChildren
                if parent.childNodes:  # the last column
                    parent._verifyChildren(len(parent.childNodes) - 1)
            return super().startStream(parent, attrs)

    return ContentHandler


_CONTENT_HANDLER = None


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, 'item'):  # numpy scalar
        return value.item()
    return value


def _parse_coinc(data):
    global _CONTENT_HANDLER
    from igwn_ligolw import lsctables, utils

    if _CONTENT_HANDLER is None:
        _CONTENT_HANDLER = _coinc_content_handler()
    try:
        document = utils.load_fileobj(io.BytesIO(data),
                                      contenthandler=_CONTENT_HANDLER)
    except Exception as exc:  # the SAX parser raises many types
        raise EventFileError(f'Malformed coinc.xml: {exc}') from None
    try:
        coinc_inspiral, = lsctables.CoincInspiralTable.get_table(document)
        coinc_event, = lsctables.CoincTable.get_table(document)
        singles = lsctables.SnglInspiralTable.get_table(document)
    except ValueError as exc:
        raise EventFileError(
            'Malformed coinc.xml: expected one coinc_inspiral row, one '
            f'coinc_event row and a sngl_inspiral table ({exc})') from None
    try:
        coinc_attributes = {
            column: _json_value(getattr(coinc_inspiral, column, None))
            for column in COINC_INSPIRAL_COLUMNS}
        single_attributes = [
            {column: _json_value(getattr(row, column))
             for column in singles.columnnames
             if column not in SNGL_INSPIRAL_ID_COLUMNS
             and getattr(row, column) is not None}
            for row in singles]
        end_time = coinc_attributes['end_time']
        end_time_ns = coinc_attributes['end_time_ns'] or 0
        if end_time is None:
            raise EventFileError('Malformed coinc.xml: coinc_inspiral has no '
                                 'end_time')
        nevents = getattr(coinc_event, 'nevents', None)
        return {
            'gpstime': end_time + end_time_ns * 1e-9,
            'far': _number(coinc_attributes['combined_far'], 'combined_far'),
            'instruments': getattr(coinc_event, 'instruments', None) or '',
            'nevents': None if nevents is None else int(nevents),
            'likelihood': _number(getattr(coinc_event, 'likelihood', None),
                                  'likelihood'),
            'far_is_upper_limit': False,
            'extra_attributes': {'CoincInspiral': coinc_attributes,
                                 'SingleInspiral': single_attributes},
        }
    except (AttributeError, TypeError) as exc:
        raise EventFileError(f'Malformed coinc.xml: {exc}') from None


def _iso_to_gps(text):
    text = text.strip().rstrip('Z')
    try:
        utc = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise EventFileError(f'Bad ISOTime in VOEvent: {text!r}') from None
    return utc_to_gps(utc.replace(tzinfo=datetime.timezone.utc))


def _parse_gcn_voevent(data):
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(
            resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise EventFileError(f'Malformed VOEvent: {exc}') from None
    if etree.QName(root).localname != 'VOEvent':
        raise EventFileError('An external trigger XML file must be a VOEvent')
    params = {param.get('name'): param.get('value')
              for param in root.iterfind('.//Param')}

    def text(path):
        element = root.find(path)
        return None if element is None or element.text is None \
            else element.text.strip()

    def attribute(path, name):
        element = root.find(path)
        return None if element is None else element.get(name)

    iso_time = text('.//WhereWhen//ISOTime')
    if iso_time is None:
        raise EventFileError('The VOEvent has no WhereWhen ISOTime')
    trigger_id = params.get('TrigID') or params.get('Trans_Num')
    duration = params.get('Trans_Duration') or params.get('Trig_Dur')
    grb = dict.fromkeys(GRB_KEYS)
    grb.update(
        ivorn=root.get('ivorn'),
        author_ivorn=text('Who/AuthorIVORN'),
        author_shortname=text('Who/Author/shortName'),
        observatory_location_id=attribute('.//ObservatoryLocation', 'id'),
        coord_system=attribute('.//AstroCoordSystem', 'id'),
        ra=_number(text('.//Position2D/Value2/C1'), 'C1'),
        dec=_number(text('.//Position2D/Value2/C2'), 'C2'),
        error_radius=_number(text('.//Position2D/Error2Radius'),
                             'Error2Radius'),
        how_description=text('How/Description'),
        how_reference_url=attribute('How/Reference', 'uri'),
        trigger_duration=_number(duration, 'trigger duration'),
        trigger_id=trigger_id)
    return {
        'gpstime': _iso_to_gps(iso_time),
        'far': None,
        'instruments': '',
        'nevents': None,
        'likelihood': None,
        'far_is_upper_limit': False,
        'extra_attributes': {'GRB': grb},
    }
