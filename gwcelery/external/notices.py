"""Parse the GCN notices (VOEvent 2.0) of external triggers.

Pure functions, no I/O: :func:`parse` turns the bytes of a Fermi GBM, Swift
BAT, INTEGRAL or SNEWS notice into an :class:`ExternalNotice`, or raises
:class:`NoticeError` saying what is wrong with it.
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
    NoticeType.SNEWS: ('SNEWS', 'Supernova'),
}

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
    """GraceDB pipeline: Fermi, Swift, INTEGRAL or SNEWS."""
    search: str
    """GraceDB search: GRB, SubGRB or Supernova."""
    trigger_id: str
    """The instrument's trigger number, shared by all its notices."""
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
    not_grb: bool
    """The instrument says the trigger is not a GRB (noise, particles,
    a terrestrial gamma-ray flash...)."""

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
    """RA, Dec, radius in degrees, or three Nones when there is none."""
    position = f'{_POSITION}/Position2D'
    if root.find(position) is None:
        return None, None, None
    ra = _float(root, f'{position}/Value2/C1', 'right ascension')
    dec = _float(root, f'{position}/Value2/C2', 'declination')
    radius = _float(root, f'{position}/Error2Radius', 'error radius')
    if not 0 < radius < max_error_radius:
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


def parse(payload, max_error_radius=180.0):
    """Parse the VOEvent bytes of a GCN notice of an external trigger.

    A position whose error radius is 0 or at least `max_error_radius`
    degrees means "no position" (the first Fermi GBM alert sends 0, SNEWS
    sends 360). Raises :class:`NoticeError` for a payload that is not XML,
    not a notice type of :data:`PIPELINE_AND_SEARCH`, or lacks the trigger
    number or time.
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
    trigger_id = _param(root, 'TrigID') or _param(root, 'Trans_Num')
    if not trigger_id:
        raise NoticeError(f'{notice_type.name} notice has no trigger number')
    ra, dec, radius = _position(root, max_error_radius)
    classification, not_grb = (_fermi_classification(root)
                               if pipeline == 'Fermi' else (None, False))
    return ExternalNotice(
        ivorn=root.attrib.get('ivorn', ''),
        role=root.attrib.get('role', 'observation'),
        notice_type=int(notice_type), pipeline=pipeline, search=search,
        trigger_id=trigger_id.strip(), gpstime=_trigger_time(root),
        date=(root.findtext('./Who/Date') or '').strip(),
        ra=ra, dec=dec, error_radius=radius, classification=classification,
        not_grb=not_grb or _group_flag(root, 'Def_NOT_a_GRB'))
