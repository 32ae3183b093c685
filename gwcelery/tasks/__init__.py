"""Celery tasks, one module per concern."""

from . import (
    bayestar,  # noqa: F401
    circulars,  # noqa: F401
    core,  # noqa: F401
    detchar,  # noqa: F401
    em_bright,  # noqa: F401
    external_skymaps,  # noqa: F401
    external_triggers,  # noqa: F401
    first2years,  # noqa: F401
    gcn,  # noqa: F401
    gracedb,  # noqa: F401
    localization,  # noqa: F401
    lvalert,  # noqa: F401
    orchestrator,  # noqa: F401
    p_astro,  # noqa: F401
    raven,  # noqa: F401
    raven_followup,  # noqa: F401
    skymaps,  # noqa: F401
    superevents,  # noqa: F401
)
