r"""Coincidence of external triggers with GW superevents: pure arithmetic.

Windows, rates and false alarm rates of the RAVEN search. The functions
take the application's configuration (``app.conf``, or any mapping with the
``raven_*`` settings of :mod:`gwcelery.conf`) and touch no service.

The temporal coincidence FAR is the one of ligo-raven's ``coinc_far``
(A. Urban 2016, PhD thesis, University of Wisconsin-Milwaukee; the RAVEN
method as used by LIGO/Virgo/KAGRA): the GW candidate's FAR times the
probability that an unrelated external trigger falls in the window,

.. math::  \mathrm{FAR}_t = (t_{hi} - t_{lo})\, R_{ext}\, \mathrm{FAR}_{GW},

and the space-time FAR divides it by the sky map overlap integral
:math:`I_\Omega` (Ashton et al. 2018, ApJ 860, 6):
:math:`\mathrm{FAR}_{st} = \mathrm{FAR}_t / I_\Omega`.
"""

#: GraceDB pipelines of the external triggers that RAVEN considers.
EXTERNAL_PIPELINES = frozenset({'Fermi', 'Swift', 'INTEGRAL', 'AGILE',
                                'SNEWS'})

#: External searches that are supernova neutrino alerts.
NEUTRINO_SEARCHES = frozenset({'Supernova'})


def window(conf, ext_search, group):
    """Coincidence window ``(start, end)`` in seconds of ``t_0 - t_ext``.

    `ext_search` is the external event's search (GRB, SubGRB, Supernova,
    MDC), `group` the superevent's analysis group (CBC or Burst).
    """
    if ext_search in NEUTRINO_SEARCHES:
        start, end = conf['raven_coincidence_window_snews']
    elif group == 'Burst':
        start, end = conf['raven_coincidence_window_grb_burst']
    else:
        start, end = conf['raven_coincidence_window_grb_cbc']
    return float(start), float(end)


def external_search_span(conf, group):
    """Interval ``(lo, hi)``, relative to a superevent's ``t_0``, in which
    external triggers may coincide with it: the union of the windows."""
    spans = [window(conf, search, group) for search in ('GRB', 'Supernova')]
    return -max(end for _, end in spans), -min(start for start, _ in spans)


def superevent_search_span(conf, ext_search):
    """Interval ``(lo, hi)``, relative to an external trigger's time, in
    which the ``t_0`` of a coincident superevent of either group may lie."""
    spans = [window(conf, ext_search, group) for group in ('CBC', 'Burst')]
    return min(start for start, _ in spans), max(end for _, end in spans)


def in_window(conf, ext_search, group, t_0, t_ext):
    """Whether a superevent at `t_0` and an external trigger at `t_ext`
    coincide."""
    start, end = window(conf, ext_search, group)
    return start <= t_0 - t_ext <= end


def external_rate(conf, ext_search):
    """Rate (Hz) of external triggers of this kind, for the temporal FAR.

    GRB (and MDC) searches: the summed rate of independent GRB discoveries
    :obj:`~gwcelery.conf.raven_grb_rates`; SubGRB adds
    :obj:`~gwcelery.conf.raven_subgrb_rate`; supernova neutrino alerts use
    :obj:`~gwcelery.conf.raven_snews_rate`.
    """
    if ext_search in NEUTRINO_SEARCHES:
        return conf['raven_snews_rate']
    rate = sum(conf['raven_grb_rates'].values())
    if ext_search == 'SubGRB':
        rate += conf['raven_subgrb_rate']
    return rate


def temporal_far(gw_far, rate, start, end):
    """Temporal coincidence FAR (Hz): ``(end - start) * rate * gw_far``."""
    return (end - start) * rate * gw_far


def spacetime_far(time_far, overlap):
    """Space-time coincidence FAR (Hz): the temporal FAR divided by the sky
    map overlap integral; ``None`` when the sky maps do not overlap."""
    if overlap is None or not overlap > 0:
        return None
    return time_far / overlap


def passes_alert_threshold(conf, combined_far, group):
    """Whether a coincidence is significant enough for ``RAVEN_ALERT``:
    ``combined_far * trials_factor <= threshold`` for the GW group."""
    return (combined_far * conf['raven_trials_factor'][group]
            <= conf['raven_alert_far_threshold'][group])


def alert_coincidence(superevent, ext_event, combined_skymap_filename=None):
    """What a public alert says about the external trigger of a superevent
    labelled ``RAVEN_ALERT`` (its ``em_type``, `ext_event`): the fields of
    the IGWN alert schema's ``external_coinc`` (without the sky map's
    bytes) plus the name of the combined sky map, or ``None``.

    ``time_difference`` is the superevent's ``t_0`` minus the trigger's
    time, to the hundredth of a second; the FARs are the superevent's.
    """
    grb = (ext_event.get('extra_attributes') or {}).get('GRB') or {}
    return {
        'gcn_notice_id': grb.get('trigger_id'),
        'ivorn': grb.get('ivorn'),
        'observatory': ext_event['pipeline'],
        'search': ext_event['search'],
        'time_difference': round(superevent['t_0'] - ext_event['gpstime'],
                                 2),
        'time_coincidence_far': superevent['time_coinc_far'],
        'time_sky_position_coincidence_far': superevent['space_coinc_far'],
        'combined_skymap_filename': combined_skymap_filename,
    }
