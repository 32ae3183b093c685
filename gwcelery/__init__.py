"""GWCelery: a low-latency pipeline for gravitational-wave alerts.

``from gwcelery import app`` gives the Celery application. Its
configuration comes from the module named by ``CELERY_CONFIG_MODULE``, or
the settings of a running ``gwcelery local``, or the
:mod:`gwcelery.conf.local` preset: see :mod:`gwcelery.util.settings`.
"""

from .util import early_signals

early_signals.record_while_starting()

import os  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from celery import Celery  # noqa: E402
from celery.exceptions import CPendingDeprecationWarning  # noqa: E402

from .util import broker_transport  # noqa: E402
from .util.broker_lease import MessageLeases  # noqa: E402
from .util.settings import config_module_name, load_settings  # noqa: E402

try:
    __version__ = version('gwcelery')
except PackageNotFoundError:  # running from a source tree
    __version__ = '0+unknown'


def _eager_from_environment():
    return os.environ.get('GWCELERY_EAGER', '').lower() in {'1', 'true', 'yes'}


broker_transport.install()
# Running tasks are kept on purpose when the broker connection is lost
# (see worker_cancel_long_running_tasks_on_connection_loss): no need to
# repeat Celery's advice against it at each reconnection.
warnings.filterwarnings(
    'ignore', category=CPendingDeprecationWarning,
    message=r'\s*In Celery 5\.1 we introduced an optional breaking change')
app = Celery('gwcelery')
app.config_from_object(load_settings(config_module_name()))
if _eager_from_environment():
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
app.steps['consumer'].add(MessageLeases)

# Register the tasks: a worker started with ``-A gwcelery`` knows them all.
from . import tasks  # noqa: E402,F401

__all__ = ('app', '__version__')
