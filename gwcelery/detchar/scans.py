"""Omega scans: q-transforms of a detector's strain around a time, as PNG.

One row of panels, one per duration: panel ``d`` spans ``t0 ± d`` with the
normalised energy of gwpy's q-transform (20 Hz up to what the sample rate
allows, log frequency axis), a shared colour scale 0--30.
"""

import io

#: Frequency range asked of the q-transform (gwpy lowers the top to what
#: the sample rate and Q range allow).
FREQUENCY_RANGE = (20, 4096)

#: Colour scale of the normalised energy.
ENERGY_LIMITS = (0, 30)


def data_span(t0, durations, padding=2.0):
    """``(start, end)`` of the strain to read for panels of `durations`
    around `t0`: the widest panel and `padding` seconds for whitening."""
    half = max(durations) + padding
    return t0 - half, t0 + half


def _png(figure, dpi):
    out = io.BytesIO()
    figure.savefig(out, format='png', dpi=dpi)
    return out.getvalue()


def scan_png(strain, t0, durations, title, dpi):
    """The omega scan of `strain` (a gwpy TimeSeries) around `t0` as PNG
    bytes. Raises ValueError, IndexError or FloatingPointError if the data
    do not allow the q-transform (too short, flat, ...)."""
    from matplotlib.figure import Figure

    strain = strain.astype('float64')
    figure = Figure(figsize=(10 * len(durations), 5), layout='constrained')
    mesh = None
    for number, duration in enumerate(durations, 1):
        scan = strain.q_transform(frange=FREQUENCY_RANGE, gps=t0,
                                  outseg=(t0 - duration, t0 + duration),
                                  logf=True)
        axes = figure.add_subplot(1, len(durations), number)
        mesh = axes.pcolormesh(scan.times.value - t0,
                               scan.frequencies.value, scan.value.T,
                               vmin=ENERGY_LIMITS[0], vmax=ENERGY_LIMITS[1],
                               shading='auto')
        axes.set_yscale('log')
        axes.set_xlabel(f'Time (s) from {t0}')
        axes.set_ylabel('Frequency (Hz)')
    figure.colorbar(mesh, ax=figure.axes, label='Normalized energy')
    figure.suptitle(title)
    return _png(figure, dpi)


def failure_png(message, dpi):
    """A blank figure that says `message`, as PNG bytes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2))
    figure.text(0.5, 0.5, message, ha='center', va='center')
    return _png(figure, dpi)
