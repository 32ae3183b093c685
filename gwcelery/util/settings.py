"""Which settings the app loads.

In order of precedence:

1. ``CELERY_CONFIG_MODULE``: a preset name (``playground``) or any module
   path (``mysite.celeryconfig``).
2. Otherwise, the settings that a running ``gwcelery local`` recorded in
   its data directory (``$GWCELERY_LOCAL_DIR``, default ``./gwcelery-local``),
   so that ``gwcelery inspect ping``, ``gwcelery call ...`` and Flower in a
   second terminal reach that deployment's broker with no extra
   environment. A directory named by ``GWCELERY_LOCAL_DIR`` is used
   whenever it holds recorded settings (the user asked for it); the
   default directory only while its deployment runs.
3. Otherwise the :mod:`gwcelery.conf.local` preset.

A configuration module may also use Celery's pre-4.0 upper-case names (the
design documents switch on single-process mode with
``CELERY_ALWAYS_EAGER = CELERY_EAGER_PROPAGATES_EXCEPTIONS = True``):
:func:`load_settings` gives them their new names, over whatever the module
imported from a preset.
"""

import importlib
import os
import sys

from celery.app.defaults import _TO_NEW_KEY as NEW_NAME_OF_OLD  # noqa: N812

from .pidlock import LOCK_NAME, held_by

__all__ = ('config_module_name', 'running_deployment', 'load_settings',
           'DEFAULT_CONFIG_MODULE', 'PRESETS', 'LOCAL_CONFIG_MODULE',
           'LOCAL_DIR_VARIABLE', 'DEFAULT_LOCAL_DIR')

DEFAULT_CONFIG_MODULE = 'gwcelery.conf.local'

#: Preset names that ``CELERY_CONFIG_MODULE`` may give without a package.
PRESETS = ('production', 'playground', 'test', 'development', 'local',
           'eager')

#: Name of the configuration module that ``gwcelery local`` writes into its
#: data directory.
LOCAL_CONFIG_MODULE = 'gwcelery_local_config'

#: Environment variable naming the data directory of the local deployment
#: that commands should reach.
LOCAL_DIR_VARIABLE = 'GWCELERY_LOCAL_DIR'

#: Data directory of ``gwcelery local`` when ``--data-dir`` is not given.
DEFAULT_LOCAL_DIR = 'gwcelery-local'


def running_deployment():
    """Return the data directory whose recorded settings apply, or None.

    See the module docstring for the rule.
    """
    chosen = os.environ.get(LOCAL_DIR_VARIABLE)
    data_dir = os.path.abspath(chosen or DEFAULT_LOCAL_DIR)
    recorded = os.path.exists(
        os.path.join(data_dir, f'{LOCAL_CONFIG_MODULE}.py'))
    if not recorded:
        return None
    if chosen or held_by(os.path.join(data_dir, LOCK_NAME)):
        return data_dir
    return None


def config_module_name():
    """Return the name of the configuration module to load.

    As a side effect, a running deployment's data directory goes on
    ``sys.path`` so that its recorded module can be imported.
    """
    name = os.environ.get('CELERY_CONFIG_MODULE')
    if name:
        return f'gwcelery.conf.{name}' if name in PRESETS else name
    data_dir = running_deployment()
    if data_dir is None:
        return DEFAULT_CONFIG_MODULE
    if data_dir not in sys.path:
        sys.path.insert(0, data_dir)
    return LOCAL_CONFIG_MODULE


def load_settings(module_name):
    """Return the settings of the module `module_name`, as a dict.

    They lie over the documented base configuration (:mod:`gwcelery.conf`),
    so that a module that imports no preset still has every gwcelery
    setting, and its pre-4.0 upper-case names are given their new names:
    Celery itself ignores an old name when the module also has the new one
    (as every module that imports a preset has).
    """
    settings = {}
    for name in ('gwcelery.conf', module_name):
        module = importlib.import_module(name)
        settings.update((key, value) for key, value in vars(module).items()
                        if not key.startswith('_'))
    old_names = [key for key in settings if key in NEW_NAME_OF_OLD]
    for key in old_names:
        settings[NEW_NAME_OF_OLD[key]] = settings.pop(key)
    return settings
