"""Simulated low-latency frames for the local deployment and the tests.

:func:`write_frames` writes rolling GWF frames of a fixed duration for each
detector under the directory of :obj:`~gwcelery.conf.llhoft_glob`, with the
real state-vector, data-quality-vector, iDQ and strain channel names of
:obj:`~gwcelery.conf.llhoft_channels`, :obj:`~gwcelery.conf.idq_channels`
and :obj:`~gwcelery.conf.strain_channel_names` (white noise).
Every defined bit is set (good data, no injection) except during *bad
segments*: ``{"start", "end", "kind"}`` dicts, where kind ``"dqv"`` clears
the observation-intent bit and ``"inj"`` the CBC-injection bit.
:func:`prune_frames` deletes the frames older than a few minutes, as the
real low-latency store does.
"""

import os

import numpy as np

from .frames import frame_span
from .vectors import detector_of

#: Bit cleared by each kind of bad segment.
BAD_BITS = {'dqv': 'OBSERVATION_INTENT', 'inj': 'NO_CBC_HW_INJ'}

#: Samples per second of the simulated vectors (the real ones have 16).
SAMPLE_RATE = 16

#: Samples per second of the simulated strain (white noise), enough for an
#: omega scan up to a few hundred hertz.
STRAIN_RATE = 2048

#: Standard deviation of the simulated strain.
STRAIN_SIGMA = 1e-21


def bad_data_kind(number, fraction):
    """The bad segment (``'dqv'``, ``'inj'``) of the `number`-th mock event
    (from 1), or ``None``: every ``round(1 / fraction)``-th event has one,
    bad state and injection in turn, so that a short run shows both."""
    every = max(1, round(1 / fraction))
    if number % every:
        return None
    return 'dqv' if (number // every) % 2 else 'inj'


def frame_directory(conf, detector):
    """The directory of `detector`'s frames: that of
    :obj:`~gwcelery.conf.llhoft_glob` (which must not have a wildcard in
    its directory part)."""
    return os.path.dirname(conf['llhoft_glob'].format(detector=detector))


def frame_name(detector, start, duration):
    """File name of a frame, following the frame convention."""
    return f'{detector[0]}-{detector}_llhoft-{start}-{duration}.gwf'


def detectors(conf):
    """The detectors that have vectors in the settings, sorted."""
    return sorted({detector_of(channel)
                   for channel in conf['llhoft_channels']})


def _word(definitions, cleared=()):
    """Integer with every bit of `definitions` set but those named in
    `cleared`."""
    word = 0
    for bit, name in definitions.items():
        if name not in cleared:
            word |= 1 << int(bit)
    return word


def vector_samples(conf, bitset, start, duration, segments):
    """Samples of a vector of bit set `bitset` over ``[start, start +
    duration)``: all bits set, but the bits of :data:`BAD_BITS` cleared in
    the samples that fall in a bad segment."""
    definitions = conf['detchar_bit_definitions'][bitset]
    times = start + np.arange(duration * SAMPLE_RATE) / SAMPLE_RATE
    samples = np.full(len(times), _word(definitions), dtype=np.uint32)
    for segment in segments:
        inside = (times >= segment['start']) & (times < segment['end'])
        samples[inside] = _word(definitions, (BAD_BITS[segment['kind']],))
    return samples


def write_frame(conf, detector, start, duration, segments):
    """Write one frame of `detector` and return its path. The file appears
    whole (written under a temporary name, then renamed), so a reader
    never sees half a frame."""
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    data = TimeSeriesDict()
    for channel, bitset in conf['llhoft_channels'].items():
        if detector_of(channel) == detector:
            data[channel] = TimeSeries(
                vector_samples(conf, bitset, start, duration, segments),
                t0=start, sample_rate=SAMPLE_RATE, name=channel,
                channel=channel)
    for channel in conf['idq_channels']:
        if detector_of(channel) == detector:
            data[channel] = TimeSeries(
                np.zeros(duration * SAMPLE_RATE), t0=start,
                sample_rate=SAMPLE_RATE, name=channel, channel=channel)
    channel = conf['strain_channel_names'].get(detector)
    if channel is not None:
        noise = np.random.default_rng().normal(
            0, STRAIN_SIGMA, duration * STRAIN_RATE)
        data[channel] = TimeSeries(noise, t0=start, sample_rate=STRAIN_RATE,
                                   name=channel, channel=channel)
    directory = frame_directory(conf, detector)
    os.makedirs(directory, exist_ok=True)
    name = frame_name(detector, start, duration)
    path = os.path.join(directory, name)
    # Two writers may overlap (Beat sends the next run while one is slow):
    # each writes a temporary file of its own, then renames it.
    partial = os.path.join(directory, f'{os.getpid()}.{name}.part')
    data.write(partial, format='gwf')
    os.replace(partial, path)
    return path


def write_frames(conf, now, duration, history, segments=()):
    """Write the missing frames of every detector that end by `now` (GPS)
    and start at most `history` seconds earlier; frame starts are
    multiples of `duration`. Return the paths written."""
    last_end = int(now // duration) * duration
    first_start = last_end - int(history // duration) * duration
    written = []
    for detector in detectors(conf):
        directory = frame_directory(conf, detector)
        for start in range(first_start, last_end, duration):
            path = os.path.join(directory,
                                frame_name(detector, start, duration))
            if not os.path.exists(path):
                written.append(write_frame(conf, detector, start, duration,
                                           segments))
    return written


def prune_frames(conf, now, keep):
    """Delete the frames (and stale temporary files) of every detector that
    ended more than `keep` seconds before `now`; return how many."""
    removed = 0
    for detector in detectors(conf):
        directory = frame_directory(conf, detector)
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            span = frame_span(name.removesuffix('.part'))
            if span is not None and span[1] < now - keep:
                try:
                    os.remove(os.path.join(directory, name))
                except FileNotFoundError:
                    continue  # pruned meanwhile by an overlapping run
                removed += 1
    return removed
