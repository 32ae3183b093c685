"""The bits of the state and data-quality vectors, and what they decide.

Pure functions over settings (a mapping such as ``app.conf``) and plain
values. A *bit* is keyed ``IFO:NAME`` (``H1:OBSERVATION_INTENT``) and is
``True`` if it is set in every sample of the window, ``False`` if it is
clear in at least one, and ``None`` if it could not be read. Bits whose
name ends in ``_INJ`` are injection bits (clear: an injection is on); the
others are data-quality bits (clear: the data are bad).
"""

import html

import numpy as np

GOOD, BAD, UNKNOWN = 'good', 'bad', 'unknown'
"""Data-quality states of a detector or of a candidate."""

FOUND, NONE_FOUND = 'found', 'none'
"""Injection states (besides :data:`UNKNOWN`)."""

HIGH, LOW = 'high', 'low'
"""iDQ states (besides :data:`UNKNOWN`)."""

#: Channel suffix skipped for pipelines that analyse gated h(t): their
#: gating already removes the glitches that the DMT vector flags.
DMT_DQ_VECTOR = 'DMT-DQ_VECTOR'


def detector_of(channel):
    """The detector (``H1``) of a channel (``H1:GDS-CALIB_STATE_VECTOR``)."""
    return channel.partition(':')[0]


def uses_gated_hoft(conf, pipeline):
    """Whether `pipeline` (any case) analyses gated h(t)."""
    return bool(conf['uses_gatedhoft'].get((pipeline or '').lower()))


def channels_to_check(conf, detectors, gated):
    """The ``(channel, bit set name)`` pairs of
    :obj:`~gwcelery.conf.llhoft_channels` of `detectors`, without the DMT
    data-quality vectors if the pipeline uses gated h(t) (`gated`)."""
    return [(channel, bitset)
            for channel, bitset in conf['llhoft_channels'].items()
            if detector_of(channel) in detectors
            and not (gated and channel.endswith(DMT_DQ_VECTOR))]


def bits_of(conf, channel, bitset, values):
    """The bits of one channel: ``{IFO:NAME: True/False/None}``.

    `values` are the samples in the window (integers), or ``None`` if the
    channel could not be read; an empty series counts as unread.
    """
    definitions = conf['detchar_bit_definitions'][bitset]
    ifo = detector_of(channel)
    if values is None or len(values) == 0:
        return {f'{ifo}:{name}': None for name in definitions.values()}
    samples = np.asarray(values).astype(np.uint32)
    return {f'{ifo}:{name}': bool(np.all((samples >> int(bit)) & 1))
            for bit, name in definitions.items()}


def is_injection_bit(key):
    """Whether bit `key` (``IFO:NAME``) is a hardware-injection bit."""
    return key.endswith('_INJ')


def _of(bits, detectors, injection):
    return [value for key, value in bits.items()
            if detector_of(key) in detectors
            and is_injection_bit(key) == injection]


def dq_state(bits, detectors):
    """Data-quality state of `detectors` from their non-injection bits.

    :data:`BAD` if any bit is clear (a bit known to be bad vetoes even if
    another detector's frames are missing), else :data:`UNKNOWN` if any is
    unread or no bit at all was checked, else :data:`GOOD`.
    """
    return _combine(_of(bits, detectors, injection=False), BAD, GOOD)


def injection_state(bits, detectors):
    """Hardware-injection state of `detectors`: :data:`FOUND` if any of
    their injection bits is clear, else :data:`UNKNOWN` if any is unread
    (or none was checked), else :data:`NONE_FOUND`."""
    return _combine(_of(bits, detectors, injection=True), FOUND, NONE_FOUND)


def _combine(values, any_clear, all_set):
    """`any_clear` if a bit value is False, else :data:`UNKNOWN` if one
    is None or there are none, else `all_set`."""
    if False in values:
        return any_clear
    if not values or None in values:
        return UNKNOWN
    return all_set


def idq_state(maxima, threshold):
    """iDQ state from the maximum glitch probability of each channel
    (``None`` if unread): :data:`UNKNOWN` if there is no channel or one is
    unread, :data:`HIGH` if one reaches `threshold`, else :data:`LOW`."""
    values = list(maxima.values())
    if not values or None in values:
        return UNKNOWN
    if any(value >= threshold for value in values):
        return HIGH
    return LOW


def decide_labels(conf, dq, injection, idq, idq_veto):
    """The labels to add and to remove, as two sorted lists.

    Good data: the OK label, without the veto label; bad data (or a high
    iDQ glitch probability when `idq_veto`): the veto label, without the
    OK label; unknown: no change. An injection adds the injection label;
    none found removes it; unknown leaves it.
    """
    ok = conf['detchar_ok_label']
    veto = conf['data_quality_veto_label']
    inj = conf['injection_label']
    add, remove = set(), set()
    if dq == BAD or (idq_veto and idq == HIGH):
        add.add(veto)
        remove.add(ok)
    elif dq == GOOD:
        add.add(ok)
        remove.add(veto)
    if injection == FOUND:
        add.add(inj)
    elif injection == NONE_FOUND:
        remove.add(inj)
    return sorted(add), sorted(remove)


def prepost(conf, pipeline):
    """Padding ``(pre, post)`` in seconds of `pipeline` (any case), from
    :obj:`~gwcelery.conf.check_vector_prepost`."""
    table = conf['check_vector_prepost']
    pre, post = table.get((pipeline or '').lower(),
                          conf['check_vector_default_prepost'])
    return float(pre), float(post)


def event_span(event, t_start=None, t_end=None):
    """The interval to check before padding: the superevent's
    ``t_start``/``t_end`` if given; for an external trigger its GPS time
    to the end of its burst (``trigger_duration``, 4 s if unknown), or
    the instant of a neutrino alert."""
    if t_start is not None and t_end is not None:
        return float(t_start), float(t_end)
    gpstime = float(event['gpstime'])
    if event.get('search') == 'Supernova' or event.get('pipeline') == 'SNEWS':
        return gpstime, gpstime
    grb = (event.get('extra_attributes') or {}).get('GRB') or {}
    return gpstime, gpstime + float(grb.get('trigger_duration') or 4.0)


def window(conf, pipeline, start, end):
    """The checked window ``(start - pre, end + post)`` of `pipeline`."""
    pre, post = prepost(conf, pipeline)
    return start - pre, end + post


def active_detectors(event, available):
    """The detectors whose state matters for `event`: those of its
    ``instruments``; an external trigger (no instruments) takes every
    detector of `available` (all could have seen its counterpart)."""
    used = [ifo for ifo in (event.get('instruments') or '').split(',') if ifo]
    return sorted(used) if used else sorted(available)


def _cell(value):
    if value is None:
        return '<td style="background:#ff0">unknown</td>'
    if value:
        return '<td style="background:#0f0">1</td>'
    return '<td style="background:#f00">0</td>'


def overall(bits):
    """State of all `bits` for the table's last row: :data:`BAD` if any is
    clear, else :data:`UNKNOWN` if any is unread, else :data:`GOOD`."""
    values = list(bits.values())
    if False in values:
        return BAD
    return UNKNOWN if None in values else GOOD


def vector_table(caption, bits):
    """An HTML table of `bits`: a row per bit (1, 0 or unknown) and a last
    row with their :func:`overall` state."""
    rows = ''.join(f'<tr><td>{html.escape(key)}</td>{_cell(value)}</tr>'
                   for key, value in sorted(bits.items()))
    return (f'<table><caption>{html.escape(caption)}</caption>'
            '<tr><th>Bit</th><th>Value</th></tr>'
            f'{rows}<tr><td>Overall state for all detectors</td>'
            f'<td>{overall(bits)}</td></tr></table>')


def summary(conf, result):
    """The log message of a check `result` (see
    :func:`gwcelery.tasks.detchar.check_vectors`), HTML."""
    pre, post = result['prepost']
    detectors = ', '.join(result['active']) or 'none'
    parts = [f'Detector state for active instruments ({detectors}) is '
             f'{result["dq"]}.']
    if result['dq'] == UNKNOWN and result['missing']:
        parts.append('No readable frames for '
                     f'{", ".join(result["missing"])}.')
    parts.append({FOUND: 'Injection found.',
                  NONE_FOUND: 'No HW injections found.',
                  UNKNOWN: 'Injection state unknown.'}[result['injection']])
    maxima = ', '.join(f'{channel}: {value:.3f}'
                       for channel, value in sorted(result['idq'].items())
                       if value is not None)
    parts.append({HIGH: f'iDQ glitch probability high ({maxima}).',
                  LOW: f'iDQ glitch probabilities below '
                       f'{conf["idq_pglitch_thresh"]} ({maxima}).',
                  UNKNOWN: 'iDQ glitch probabilities unknown.'}[
        result['idq_state']])
    if result['gated']:
        parts.append(f'Pipeline {result["pipeline"]} uses gated h(t), '
                     'LIGO DMT-DQ_VECTOR not checked.')
    parts.append(f'Check looked within -{pre:g}/+{post:g} seconds of '
                 f'{result["subject"]}.')
    dq_bits = {k: v for k, v in result['bits'].items()
               if not is_injection_bit(k)}
    inj_bits = {k: v for k, v in result['bits'].items()
                if is_injection_bit(k)}
    return (' '.join(parts) + vector_table('Data quality bits', dq_bits)
            + vector_table('Injection bits', inj_bits))
