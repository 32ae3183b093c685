"""``gwcelery console`` and ``gwcelery flask``: the operator console."""

import click
from flask.cli import FlaskGroup

from ..console import auth, create_app


@click.command(name='console')
@click.option('--host', default=None,
              help='Address to listen on (default: the console_host '
                   'setting, 127.0.0.1). Any other than 127.0.0.1 needs '
                   '--users-file or --trust-remote-user.')
@click.option('--port', default=None, type=int,
              help='Port to listen on (default: the console_port '
                   'setting).')
@click.option('--users-file', type=click.Path(exists=True, dir_okay=False),
              default=None,
              help='netrc file of the users (login, password); they must '
                   'then sign in, on 127.0.0.1 too.')
@click.option('--trust-remote-user', is_flag=True,
              help='Take the user from REMOTE_USER, set by an '
                   'authenticating front-end proxy.')
@click.pass_context
def console(ctx, host, port, users_file, trust_remote_user):
    """Serve the operator console: list superevents, send a preliminary,
    Update or Retraction notice, change a preferred event, apply
    RAVEN_ALERT, inject mock events."""
    conf = ctx.obj.app.conf
    host = host or conf.console_host
    port = conf.console_port if port is None else port
    flask_app = create_app(users_file=users_file,
                           trust_remote_user=trust_remote_user)
    why = auth.check_binding(host, flask_app.config['CONSOLE_USERS'],
                             trust_remote_user)
    if why is not None:
        raise click.UsageError(why)
    from werkzeug.serving import run_simple

    click.echo(f'gwcelery console on http://{host}:{port}/')
    # Threads: an action waits for its outcome, the other pages need not.
    run_simple(host, port, flask_app, threaded=True)


flask = FlaskGroup(name='flask', create_app=lambda: create_app(),
                   add_version_option=False, load_dotenv=False,
                   help='Flask\'s own commands for the operator console '
                        '(``gwcelery flask run``, ``routes``, ``shell``), '
                        'as in the reference pipeline.')
