"""Preset for the playground deployment (gracedb-playground.ligo.org)."""

from . import *  # noqa: F403

gracedb_host = 'gracedb-playground.ligo.org'
"""Playground GraceDB."""

gracedb_url = f'https://{gracedb_host}/api/'
"""Playground GraceDB API."""

lvalert_host = 'lvalert-playground.cgca.uwm.edu'
"""Playground LVAlert server."""

lvalert_transport = 'xmpp'
"""Playground alerts come over XMPP."""

gcn_remote_address = 'capella2.gsfc.nasa.gov'
"""NASA's GCN VOEvent server."""

gcn_bind_address = '0.0.0.0'
"""Listen on every interface for GCN's receiver."""

gcn_broker_accept_addresses = ['capella2.gsfc.nasa.gov']
"""Only GCN may connect to the VOEvent broker."""
