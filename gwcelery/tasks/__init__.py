"""Celery tasks, one module per concern."""

from . import core  # noqa: F401
