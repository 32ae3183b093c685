"""Preset for one machine: every service on 127.0.0.1.

This is the default when ``CELERY_CONFIG_MODULE`` is unset. ``gwcelery
local`` starts every service it names.
"""

from . import *  # noqa: F403

mock_events_interval = 60
"""Upload a simulated candidate every minute (``gwcelery local
--mock-interval``)."""

superevent_clean_up_timeout = 30.0
"""A second preliminary alert, if the preferred event changed, follows
half a minute after the first (270 s in production) so that a demo shows
it."""

preliminary_alert_timeout = 90.0
"""Send the preliminary alert without EM_READY after a minute and a half:
longer than a BAYESTAR run here (20--30 s, more when several queue)."""

mock_grb_interval = 600
"""Send a simulated GRB notice every ten minutes."""

mock_grb_coincidence_probability = 0.3
"""A third of the mock events come with a coincident GRB."""

mock_frames_interval = 2
"""Write mock low-latency frames (H1, L1, V1) every two seconds, so that
the data-quality check finds them a few seconds after a candidate."""

mock_events_bad_data_fraction = 0.3
"""Every third mock event coincides with bad data, a bad state (``DQV``)
and an injection (``INJ``) in turn."""
