"""The ``gwcelery`` command: Celery's command line with the app preset."""

import functools
import sys

import click
from celery.bin.celery import celery
from kombu.utils.url import maybe_sanitize_url

#: Celery commands that only talk to a running deployment through its
#: broker: they fail at once, in one line, when it cannot be reached.
#: (Daemons such as ``worker`` and ``beat`` keep retrying instead, as
#: :obj:`~gwcelery.conf.broker_connection_retry_on_startup` asks.)
BROKER_CLIENT_COMMANDS = frozenset({
    'amqp', 'call', 'control', 'events', 'inspect', 'list', 'migrate',
    'purge', 'result', 'status'})

#: Seconds to wait for the broker before giving up.
BROKER_CHECK_TIMEOUT = 3.0


def broker_problem(app, timeout=BROKER_CHECK_TIMEOUT):
    """Return None if `app`'s broker answers, else a one-line message."""
    with app.connection_for_write(connect_timeout=timeout) as connection:
        url = maybe_sanitize_url(connection.as_uri(include_password=True))
        try:
            connection.ensure_connection(max_retries=1, interval_start=0,
                                         timeout=timeout)
        except Exception as error:  # each transport raises its own errors
            return (f'cannot reach the broker at {url} ({error}). Start a '
                    f'deployment here with `gwcelery local`, or point at one'
                    f' with GWCELERY_LOCAL_DIR=<its --data-dir>, '
                    f'CELERY_CONFIG_MODULE or --broker.')
    return None


def _check_broker_first(group_callback):
    """Wrap the ``celery`` group's callback: once it has loaded the app,
    refuse a broker client command whose broker does not answer."""
    @functools.wraps(group_callback)
    def callback(*args, **kwargs):
        result = group_callback(*args, **kwargs)
        ctx = click.get_current_context()
        if ctx.invoked_subcommand in BROKER_CLIENT_COMMANDS:
            problem = broker_problem(ctx.obj.app)
            if problem:
                raise click.ClickException(problem)
        return result
    return callback


def main(argv=None):
    """Run ``celery -A gwcelery ...``.

    Celery's command group keeps ``-A/--app`` as its first parameter; making
    the app its default means ``gwcelery worker``, ``gwcelery beat``,
    ``gwcelery flower`` and every ``celery.commands`` plugin (``gwcelery
    local``, ...) work exactly as they do under ``celery -A gwcelery``.
    """
    from . import app
    from .util import early_signals

    if early_signals.received is not None:
        # Asked to stop while loading, and the KeyboardInterrupt was
        # dropped on the way (see gwcelery.util.early_signals).
        sys.exit(128 + early_signals.received)
    celery.params[0].default = app
    celery.callback = _check_broker_first(celery.callback)
    return celery.main(args=argv, prog_name='gwcelery',
                       auto_envvar_prefix='CELERY')


if __name__ == '__main__':
    sys.exit(main())
