"""``gwcelery gracedb-server``: the local GraceDB-compatible server."""

import logging
import signal
import threading

import click


def read_passwords(path):
    """``{user: password}`` from a file of ``USER PASSWORD`` lines."""
    passwords = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            user, _, password = line.partition(' ')
            if not password.strip():
                raise click.BadParameter(
                    f'{path}:{number}: expected "USER PASSWORD"')
            passwords[user] = password.strip()
    return passwords


def alert_transports(conf, names):
    """Build the alert transports named in ``names`` from the settings."""
    from ..gracedb_server.alerts import RedisTransport, XMPPTransport

    transports = []
    for name in names:
        if name == 'redis':
            # conf.broker_url (not conf['broker_url']) honours the
            # environment variable CELERY_BROKER_URL.
            url = (conf['gracedb_server_redis_url']
                   or conf['lvalert_redis_url'] or conf.broker_url)
            prefix = conf.get('lvalert_redis_channel_prefix', 'lvalert:')
            transports.append(RedisTransport(url, prefix))
        elif name == 'xmpp':
            host = conf['gracedb_server_xmpp_host'] or conf['lvalert_host']
            port = (conf['gracedb_server_xmpp_port']
                    or conf.get('lvalert_port'))
            transports.append(XMPPTransport(
                host, netrc_file=conf['gracedb_server_xmpp_netrc'],
                ca_certs=conf['gracedb_server_xmpp_ca_certs'],
                address=(host, port) if port else None))
        elif name == 'kafka':
            from ..kafka.igwn_alert import KafkaTransport
            transports.append(KafkaTransport(conf['igwn_alert_url'],
                                             conf['igwn_alert_group']))
        elif name != 'none':
            raise click.BadParameter(f'unknown alert transport {name!r}',
                                     param_hint='--alerts')
    return transports


@click.command(name='gracedb-server')
@click.option('--host', help='Address to listen on '
              '[default: gracedb_server_host].')
@click.option('--port', type=int, help='Port to listen on (0 picks a free '
              'one) [default: gracedb_server_port].')
@click.option('--data-dir', type=click.Path(file_okay=False),
              help='Directory of the database and uploaded files '
              '[default: gracedb_server_data_dir].')
@click.option('--public-url', help='API root written in links and alerts '
              '[default: http://HOST:PORT/api/].')
@click.option('--alerts', 'alerts', multiple=True,
              type=click.Choice(['redis', 'xmpp', 'kafka', 'none']),
              help='Alert transport; repeat for several '
              '[default: gracedb_server_alert_transports].')
@click.option('--write-user', 'write_users', multiple=True,
              help='User allowed to change data; repeat for several '
              '[default: gracedb_server_write_users, or anyone].')
@click.option('--passwords-file', type=click.Path(dir_okay=False),
              help='File of "USER PASSWORD" lines that credentials are '
              'checked against [default: gracedb_server_passwords_file].')
@click.option('--log-level', default='INFO', show_default=True,
              type=click.Choice(['DEBUG', 'INFO', 'WARNING', 'ERROR']),
              help='Logging level (DEBUG shows every request).')
@click.pass_context
def gracedb_server(ctx, host, port, data_dir, public_url, alerts,
                   write_users, passwords_file, log_level):
    """Run a GraceDB-compatible server for the pipeline on this machine.

    The REST API is at http://HOST:PORT/api/ (also /api/v1/ and /api/v2/)
    and the pages for people at http://HOST:PORT/superevents/. Data stays in
    the data directory across restarts.
    """
    from .. import app
    from ..gracedb_server import GraceDbServer

    conf = app.conf
    logging.basicConfig(level=log_level,
                        format='%(asctime)s %(levelname)s %(name)s: '
                        '%(message)s')
    passwords_file = passwords_file or conf['gracedb_server_passwords_file']
    write_users = list(write_users) or conf['gracedb_server_write_users']
    server = GraceDbServer(
        data_dir or conf['gracedb_server_data_dir'],
        host=host or conf['gracedb_server_host'],
        port=conf['gracedb_server_port'] if port is None else port,
        public_url=public_url or conf['gracedb_server_public_url'],
        transports=alert_transports(
            conf, alerts or conf['gracedb_server_alert_transports']),
        write_users=write_users,
        passwords=read_passwords(passwords_file) if passwords_file else None)

    def shut_down(signum, frame):
        threading.Thread(target=server.http.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    click.echo(f'GraceDB server: API {server.url}, pages '
               f"{server.url.replace('/api/', '/superevents/')}, data in "
               f'{server.data_dir}')
    try:
        server.serve_forever()
    finally:
        server.stop()
