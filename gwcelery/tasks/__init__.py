"""Celery tasks, one module per concern."""

from . import core  # noqa: F401
from . import external_skymaps  # noqa: F401
from . import gracedb  # noqa: F401
