"""Identifiers as GraceDB assigns them, and GPS/UTC time conversion."""

import datetime
import re

GPS_EPOCH = datetime.datetime(1980, 1, 6, tzinfo=datetime.timezone.utc)

#: UTC dates at whose start a leap second had just been inserted (IERS
#: Bulletin C). GPS time does not have them, so UTC = GPS - (number so far).
LEAP_SECOND_DATES = tuple(
    datetime.datetime(year, month, 1, tzinfo=datetime.timezone.utc)
    for year, month in (
        (1981, 7), (1982, 7), (1983, 7), (1985, 7), (1988, 1), (1990, 1),
        (1991, 1), (1992, 7), (1993, 7), (1994, 7), (1996, 1), (1997, 7),
        (1999, 1), (2006, 1), (2009, 1), (2012, 7), (2015, 7), (2017, 1)))


def _leap_seconds_at_gps(gps):
    count = 0
    for date in LEAP_SECOND_DATES:
        if gps >= (date - GPS_EPOCH).total_seconds() + count + 1:
            count += 1
    return count


def gps_to_utc(gps):
    """Convert a GPS time (seconds) to an aware UTC :class:`datetime`."""
    gps = float(gps)
    return GPS_EPOCH + datetime.timedelta(
        seconds=gps - _leap_seconds_at_gps(gps))


def utc_to_gps(utc):
    """Convert an aware UTC :class:`datetime` to GPS seconds."""
    seconds = (utc - GPS_EPOCH).total_seconds()
    leaps = sum(1 for date in LEAP_SECOND_DATES if utc >= date)
    return seconds + leaps


def int_to_letters(number):
    """Bijective base-26 lowercase letters: 1 -> a, 26 -> z, 27 -> aa."""
    if number < 1:
        raise ValueError('number must be positive')
    letters = ''
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord('a') + remainder) + letters
    return letters


def letters_to_int(letters):
    """Inverse of :func:`int_to_letters` (case-insensitive)."""
    number = 0
    for char in letters.lower():
        number = number * 26 + ord(char) - ord('a') + 1
    return number


#: Superevent category codes and their display names.
CATEGORIES = {'P': 'Production', 'T': 'Test', 'M': 'MDC'}

#: Prefix of superevent ids and GW ids by category code.
CATEGORY_PREFIXES = {'P': '', 'T': 'T', 'M': 'M'}

SUPEREVENT_ID_RE = re.compile(r'^(T|M)?S(\d{6})([a-z]+)$')
GW_ID_RE = re.compile(r'^(T|M)?GW(\d{6})([A-Z]+)$')
GRACEID_RE = re.compile(r'^([GTMEH])(\d+)$')


def event_prefix(group, pipeline, search):
    """The graceid letter of an event: the first matching rule wins."""
    if group == 'Test':
        return 'T'
    if search == 'MDC':
        return 'M'
    if pipeline == 'HardwareInjection':
        return 'H'
    if group == 'External':
        return 'E'
    return 'G'


def format_graceid(prefix, number):
    """Format an event graceid such as ``G0012``."""
    return f'{prefix}{number:04d}'


def parse_graceid(graceid):
    """Return ``(prefix, number)`` of an event graceid, or ``None``."""
    match = GRACEID_RE.match(graceid or '')
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def event_category(group, search):
    """Superevent category code that an event belongs to."""
    if group == 'Test':
        return 'T'
    if search == 'MDC':
        return 'M'
    return 'P'


def superevent_date(t_0):
    """The ``yymmdd`` date string (UTC date of ``t_0``) of a superevent id.

    Raises :class:`ValueError` outside 1980 <= year < 2080.
    """
    utc = gps_to_utc(t_0)
    if not 1980 <= utc.year < 2080:
        raise ValueError(f't_0={t_0} is outside the years 1980-2079')
    return utc.strftime('%y%m%d')


def format_superevent_id(category, date, sequence):
    """Format a superevent id, e.g. ``('T', '250101', 28) -> TS250101ab``."""
    return f'{CATEGORY_PREFIXES[category]}S{date}{int_to_letters(sequence)}'


def format_gw_id(category, date, sequence):
    """Format a GW id, e.g. ``('P', '170817', 1) -> GW170817A``."""
    return (f'{CATEGORY_PREFIXES[category]}GW{date}'
            f'{int_to_letters(sequence).upper()}')


def is_superevent_id(value):
    """Whether ``value`` looks like a superevent id or a GW id."""
    return bool(SUPEREVENT_ID_RE.match(value or '')
                or GW_ID_RE.match(value or ''))
