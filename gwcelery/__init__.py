"""GWCelery: a low-latency pipeline for gravitational-wave alerts.

``from gwcelery import app`` gives the Celery application. Its
configuration comes from the preset named by ``CELERY_CONFIG_MODULE``
(default: :mod:`gwcelery.conf.local`); see :mod:`gwcelery.conf`.
"""

import os
from importlib.metadata import PackageNotFoundError, version

from celery import Celery

try:
    __version__ = version('gwcelery')
except PackageNotFoundError:  # running from a source tree
    __version__ = '0+unknown'

DEFAULT_CONFIG_MODULE = 'gwcelery.conf.local'

#: Preset names that ``CELERY_CONFIG_MODULE`` may give without a package.
PRESETS = ('production', 'playground', 'test', 'development', 'local',
           'eager')


def config_module_name():
    """Return the configuration module chosen by ``CELERY_CONFIG_MODULE``.

    A bare preset name such as ``playground`` means
    ``gwcelery.conf.playground``; anything else is a module path.
    """
    name = os.environ.get('CELERY_CONFIG_MODULE') or DEFAULT_CONFIG_MODULE
    if name in PRESETS:
        name = f'gwcelery.conf.{name}'
    return name


def _eager_from_environment():
    return os.environ.get('GWCELERY_EAGER', '').lower() in {'1', 'true', 'yes'}


app = Celery('gwcelery')
app.config_from_object(config_module_name())
if _eager_from_environment():
    app.conf.update(task_always_eager=True, task_eager_propagates=True)

# Register the tasks: a worker started with ``-A gwcelery`` knows them all.
from . import tasks  # noqa: E402,F401

__all__ = ('app', '__version__')
