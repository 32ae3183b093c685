"""Single-process debug mode on top of the ``local`` preset.

Every task runs inline in the calling process (``task_always_eager``) and
raises its exceptions in the caller (``task_eager_propagates``): no broker
and no worker are needed. Select it with
``CELERY_CONFIG_MODULE=gwcelery.conf.eager``, or set ``GWCELERY_EAGER=1``
to switch any preset to eager mode.
"""

from .local import *  # noqa: F403

task_always_eager = True
"""Run tasks inline."""

task_eager_propagates = True
"""Raise task exceptions in the caller."""
