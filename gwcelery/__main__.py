"""The ``gwcelery`` command: Celery's command line with the app preset."""

import sys

from celery.bin.celery import celery


def main(argv=None):
    """Run ``celery -A gwcelery ...``.

    Celery's command group keeps ``-A/--app`` as its first parameter; making
    the app its default means ``gwcelery worker``, ``gwcelery beat``,
    ``gwcelery flower`` and every ``celery.commands`` plugin (``gwcelery
    local``, ...) work exactly as they do under ``celery -A gwcelery``.
    """
    from . import app

    celery.params[0].default = app
    return celery.main(args=argv, prog_name='gwcelery',
                       auto_envvar_prefix='CELERY')


if __name__ == '__main__':
    sys.exit(main())
