"""Parse the GCN notices (VOEvent 2.0) of external triggers.

Pure functions, no I/O: :func:`parse` turns the bytes of a Fermi GBM, Swift
BAT, INTEGRAL, AGILE MCAL or SNEWS notice into an :class:`ExternalNotice`,
or raises :class:`NoticeError` saying what is wrong with it;
:func:`reason_to_drop` says why a parsed notice is not recorded at all and
:func:`recorded_payload` gives the bytes that GraceDB keeps.
"""

import dataclasses

import lxml.etree
from astropy.time import Time
from gcn import NoticeType

#: GraceDB pipeline and search of each notice type that the pipeline
#: turns into an External event.
PIPELINE_AND_SEARCH = {
    **dict.fromkeys((NoticeType.FERMI_GBM_ALERT, NoticeType.FERMI_GBM_FLT_POS,
                     NoticeType.FERMI_GBM_GND_POS,
                     NoticeType.FERMI_GBM_FIN_POS), ('Fermi', 'GRB')),
    NoticeType.FERMI_GBM_SUBTHRESH: ('Fermi', 'SubGRB'),
    **dict.fromkeys((NoticeType.SWIFT_BAT_GRB_POS_ACK,
                     NoticeType.SWIFT_BAT_QL_POS), ('Swift', 'GRB')),
    **dict.fromkeys((NoticeType.INTEGRAL_SPIACS, NoticeType.INTEGRAL_WAKEUP,
                     NoticeType.INTEGRAL_REFINED,
                     NoticeType.INTEGRAL_OFFLINE), ('INTEGRAL', 'GRB')),
    NoticeType.AGILE_MCAL_ALERT: ('AGILE', 'GRB'),
    NoticeType.SNEWS: ('SNEWS', 'Supernova'),
}

#: Notices whose ``Reliability`` parameter (0-9, sent by Fermi GBM for its
#: sub-threshold candidates) is at most this are dropped, as the reference
#: pipeline drops them: these candidates are mostly noise.
MAX_DROPPED_RELIABILITY = 4

#: Text in the IVORN of the notices of a mock data challenge, whose events
#: get the search ``MDC``.
MDC_IVORN_MARK = 'mdc-test_event'

#: Source classes of Fermi GBM's on-board classifier, by the value of the
#: notice's ``Most_Likely_Index`` (GCN's Fermi GBM notice documentation).
FERMI_SOURCE_CLASSES = {
    0: 'error', 1: 'unreliable location', 2: 'local particles',
    3: 'below horizon', 4: 'GRB', 5: 'generic SGR',
    6: 'generic transient', 7: 'distant particles', 8: 'solar flare',
    9: 'Cyg X-1', 10: 'SGR 1806-20', 11: 'GRO J0422+32',
    19: 'terrestrial gamma-ray flash',
}

#: ``Most_Likely_Index`` of a GRB.
FERMI_GRB_INDEX = 4

#: Smallest ``Most_Likely_Prob`` (percent) for which a Fermi GBM trigger
#: classified as a GRB is taken to be one.
FERMI_GRB_MIN_PROBABILITY = 50

_POSITION = './WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords'


class NoticeError(ValueError):
    """The payload is not a usable notice of an external trigger."""


@dataclasses.dataclass(frozen=True)
class ExternalNotice:
    """What the pipeline needs from one GCN notice."""

    ivorn: str
    """Identifier of this notice (changes with every update)."""
    role: str
    """VOEvent role: ``observation``, ``test`` or ``utility``."""
    notice_type: int
    """GCN packet type (a :class:`gcn.NoticeType` value)."""
    pipeline: str
    """GraceDB pipeline: Fermi, Swift, INTEGRAL, AGILE or SNEWS."""
    search: str
    """GraceDB search: GRB, SubGRB, Supernova, or MDC for a mock data
    challenge."""
    trigger_id: str
    """The instrument's trigger number, shared by all its notices (for
    INTEGRAL, taken from the IVORN: see :func:`recorded_payload`)."""
    gpstime: float
    """Trigger time, GPS seconds."""
    date: str
    """When the notice was written (``Who/Date``, UTC, ISO 8601)."""
    ra: float | None
    """Right ascension (degrees), or None when the notice has no position."""
    dec: float | None
    """Declination (degrees), or None."""
    error_radius: float | None
    """Radius (degrees) of the error circle, or None."""
    classification: str | None
    """Fermi GBM's classification of the source, when the notice has one."""
    not_grb_reason: str | None
    """Why the trigger is not taken for a GRB (the instrument classifies it
    as noise, retracts it, or has not classified it yet), or None."""
    reliability: int | None
    """The ``Reliability`` parameter (Fermi GBM sub-threshold), or None."""

    @property
    def not_grb(self):
        """Whether the trigger is not taken for a GRB (label NOT_GRB)."""
        return self.not_grb_reason is not None

    @property
    def test(self):
        """Whether this is a test packet (VOEvent role ``test``)."""
        return self.role == 'test'

    @property
    def group(self):
        """GraceDB group of the event: Test for test packets."""
        return 'Test' if self.test else 'External'

    @property
    def has_position(self):
        """Whether the notice locates the source on the sky."""
        return self.error_radius is not None


def _param(root, name):
    element = root.find(f"./What/Param[@name='{name}']")
    return None if element is None else element.attrib.get('value')


def _group_flag(root, name):
    element = root.find(f"./What/Group/Param[@name='{name}']")
    return element is not None and element.attrib.get('value') == 'true'


def _float(root, path, what):
    text = root.findtext(path)
    if text is None:
        raise NoticeError(f'no {what}')
    try:
        return float(text)
    except ValueError:
        raise NoticeError(f'{what} is not a number: {text!r}') from None


def _trigger_time(root):
    text = root.findtext(f'{_POSITION}/Time/TimeInstant/ISOTime')
    if not text:
        raise NoticeError('no trigger time (WhereWhen ISOTime)')
    try:
        time = Time(text.strip().rstrip('Z'), format='isot', scale='utc')
    except ValueError:
        raise NoticeError(f'bad trigger time {text!r}') from None
    return round(float(time.gps), 6)


def _position(root, max_error_radius):
    """RA, Dec, radius in degrees, or three Nones when there is none.

    All three zero is GCN's way of saying "no position" (the first Fermi
    GBM alert); a radius of zero with coordinates is a position known
    better than a pixel, as the reference pipeline takes it.
    """
    position = f'{_POSITION}/Position2D'
    if root.find(position) is None:
        return None, None, None
    ra = _float(root, f'{position}/Value2/C1', 'right ascension')
    dec = _float(root, f'{position}/Value2/C2', 'declination')
    radius = _float(root, f'{position}/Error2Radius', 'error radius')
    if (ra, dec, radius) == (0, 0, 0) or not 0 <= radius < max_error_radius:
        return None, None, None
    if not (0 <= ra <= 360 and -90 <= dec <= 90):
        raise NoticeError(f'position out of range: RA {ra}, Dec {dec}')
    return ra, dec, radius


def _fermi_classification(root):
    """Fermi GBM's source class, and whether it rules out a GRB."""
    index = _param(root, 'Most_Likely_Index')
    if index is None:
        return None, False
    try:
        index = int(index)
        probability = int(_param(root, 'Most_Likely_Prob') or 0)
    except ValueError:
        raise NoticeError('bad Most_Likely_Index/Most_Likely_Prob') from None
    name = FERMI_SOURCE_CLASSES.get(index, f'class {index}')
    classification = f'{name} ({probability}%)'
    not_grb = (index != FERMI_GRB_INDEX
               or probability < FERMI_GRB_MIN_PROBABILITY)
    return classification, not_grb


def _not_grb_reason(root, notice_type, classification, classified_not_grb):
    """Why the trigger is not taken for a GRB, or None (the reference
    pipeline's rules)."""
    if classified_not_grb:
        return f'Fermi GBM classifies it as {classification}'
    if _group_flag(root, 'Def_NOT_a_GRB'):
        return 'the notice retracts it (Def_NOT_a_GRB)'
    if _group_flag(root, 'StarTrack_Lost_Lock'):
        # Swift's star tracker lost lock: the position cannot be trusted.
        return 'Swift lost its star tracker lock (StarTrack_Lost_Lock)'
    if notice_type == NoticeType.FERMI_GBM_ALERT:
        # The first GBM alert comes before any classification and is
        # often noise; the flight position seconds later decides.
        return 'first Fermi GBM alert, not yet classified'
    return None


def _integral_trigger_id(ivorn):
    """INTEGRAL's trigger number, the last ``_``-separated field of the
    IVORN fragment up to its first ``-`` (``...#Refined_Pos_8553-0-734``):
    the ``TrigID`` parameter of INTEGRAL's notices does not carry it."""
    field = ivorn.rpartition('#')[2].rpartition('_')[2].partition('-')[0]
    return field if field.isdigit() else None


def _reliability(root):
    text = _param(root, 'Reliability')
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise NoticeError(f'bad Reliability {text!r}') from None


def reason_to_drop(notice):
    """Why `notice` is not recorded in GraceDB at all, or None.

    A low-reliability sub-threshold candidate (``Reliability`` at most
    :data:`MAX_DROPPED_RELIABILITY`) and a ``utility`` notice are dropped.
    Test notices are recorded, in the group Test.
    """
    if (notice.reliability is not None
            and notice.reliability <= MAX_DROPPED_RELIABILITY):
        return (f'low reliability: Reliability {notice.reliability} <= '
                f'{MAX_DROPPED_RELIABILITY}')
    if notice.role not in ('observation', 'test'):
        return f'VOEvent role {notice.role!r}'
    return None


def recorded_payload(payload, notice):
    """The bytes of the notice that GraceDB keeps: `payload` itself, except
    that a ``TrigID`` that differs from the notice's trigger number (always
    0 in INTEGRAL's notices) is set to it, so that GraceDB files the event
    under the right trigger."""
    root = lxml.etree.fromstring(payload)
    param = root.find("./What/Param[@name='TrigID']")
    if param is None or param.get('value') == notice.trigger_id:
        return payload
    param.set('value', notice.trigger_id)
    return lxml.etree.tostring(root, xml_declaration=True, encoding='UTF-8')


def parse(payload, max_error_radius=180.0):
    """Parse the VOEvent bytes of a GCN notice of an external trigger.

    RA, Dec and error radius all 0 (the first Fermi GBM alert, INTEGRAL
    SPI-ACS) or an error radius of at least `max_error_radius` degrees
    (SNEWS sends 360) mean "no position"; a radius of 0 with coordinates
    (AGILE MCAL) is a point. Raises :class:`NoticeError` for a payload
    that is not XML, not a notice type of :data:`PIPELINE_AND_SEARCH`, or
    lacks the trigger number or time.
    """
    try:
        root = lxml.etree.fromstring(payload)
    except lxml.etree.XMLSyntaxError as e:
        raise NoticeError(f'not well-formed XML: {e}') from None
    packet_type = _param(root, 'Packet_Type')
    if packet_type is None:
        raise NoticeError('no Packet_Type: not a GCN notice')
    try:
        notice_type = NoticeType(int(packet_type))
    except ValueError:
        raise NoticeError(f'unknown Packet_Type {packet_type!r}') from None
    if notice_type not in PIPELINE_AND_SEARCH:
        raise NoticeError(f'{notice_type.name} is not an external trigger '
                          'notice that the pipeline handles')
    pipeline, search = PIPELINE_AND_SEARCH[notice_type]
    ivorn = root.attrib.get('ivorn', '')
    if MDC_IVORN_MARK in ivorn.lower():
        search = 'MDC'
    trigger_id = ((pipeline == 'INTEGRAL' and _integral_trigger_id(ivorn))
                  or _param(root, 'TrigID') or _param(root, 'Trans_Num'))
    if not trigger_id:
        raise NoticeError(f'{notice_type.name} notice has no trigger number')
    ra, dec, radius = _position(root, max_error_radius)
    classification, classified_not_grb = (
        _fermi_classification(root) if pipeline == 'Fermi' else (None, False))
    return ExternalNotice(
        ivorn=ivorn, role=root.attrib.get('role', 'observation'),
        notice_type=int(notice_type), pipeline=pipeline, search=search,
        trigger_id=trigger_id.strip(), gpstime=_trigger_time(root),
        date=(root.findtext('./Who/Date') or '').strip(),
        ra=ra, dec=dec, error_radius=radius, classification=classification,
        not_grb_reason=_not_grb_reason(root, notice_type, classification,
                                       classified_not_grb),
        reliability=_reliability(root))
