"""Preset for one machine: every service on 127.0.0.1.

This is the default when ``CELERY_CONFIG_MODULE`` is unset. ``gwcelery
local`` starts every service it names.
"""

from . import *  # noqa: F403

mock_events_interval = 60
"""Upload a simulated candidate every minute (``gwcelery local
--mock-interval``)."""
