"""Find and read the low-latency frames (GWF) with gwpy.

Frame files follow the convention ``{site}-{IFO}_{type}-{GPS}-{DUR}.gwf``;
the start and duration in the name say which files cover a window without
opening them. gwpy reads GWF through lalframe (from the lalsuite wheel).
"""

import glob
import os
import re

#: Start and duration at the end of a frame file name.
_SPAN = re.compile(r'-(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\.gwf$')


def frame_span(path):
    """``(start, end)`` of a frame file from its name, or ``None`` if the
    name does not follow the convention."""
    match = _SPAN.search(os.path.basename(path))
    if match is None:
        return None
    start, duration = float(match[1]), float(match[2])
    return start, start + duration


def covering_files(pattern, detector, start, end):
    """The frame files of `detector` (``pattern`` with ``{detector}``) that
    overlap ``[start, end)``, in time order, if together they cover it
    without a gap; otherwise ``None`` (frames missing or not yet
    written)."""
    spans = []
    for path in glob.glob(pattern.format(detector=detector)):
        span = frame_span(path)
        if span is not None and span[0] < end and span[1] > start:
            spans.append((span, path))
    spans.sort()
    reached = start
    for (file_start, file_end), _ in spans:
        if file_start > reached:
            return None
        reached = max(reached, file_end)
    if reached < end:
        return None
    return [path for _, path in spans]


def read_channel(files, channel, start, end):
    """The samples of `channel` in ``[start, end)`` from `files` as a numpy
    array, or ``None`` if the channel cannot be read there (missing
    channel, truncated or unreadable file, data not covering the
    window)."""
    from gwpy.timeseries import TimeSeries

    try:
        series = TimeSeries.read(files, channel, start=start, end=end,
                                 format='gwf')
    except (OSError, RuntimeError, ValueError, IndexError):
        # gwpy/lalframe raise any of these for a bad file or channel.
        return None
    return series.value
