"""Preset for a developer's deployment against gracedb-dev1.ligo.org."""

from .playground import *  # noqa: F403

gracedb_host = 'gracedb-dev1.ligo.org'
"""Development GraceDB."""

gracedb_url = f'https://{gracedb_host}/api/'
"""Development GraceDB API."""

lvalert_host = 'lvalert-dev.cgca.uwm.edu'
"""Development LVAlert server."""

gcn_remote_address = '127.0.0.1'
"""Developers receive no real GCN notices."""

gcn_bind_address = '127.0.0.1'
"""Developers do not send to GCN: the broker listens locally only."""

gcn_broker_accept_addresses = ['127.0.0.1']
"""Only local clients may connect."""
