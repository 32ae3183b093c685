"""Preset for the production deployment (gracedb.ligo.org)."""

from . import *  # noqa: F403

gracedb_host = 'gracedb.ligo.org'
"""Production GraceDB."""

gracedb_url = f'https://{gracedb_host}/api/'
"""Production GraceDB API."""

lvalert_host = 'lvalert.cgca.uwm.edu'
"""Production LVAlert server."""

lvalert_transport = 'xmpp'
"""Production alerts come over XMPP."""

gcn_remote_address = 'capella2.gsfc.nasa.gov'
"""NASA's GCN VOEvent server."""

gcn_bind_address = '0.0.0.0'
"""Listen on every interface for GCN's receiver."""

gcn_broker_accept_addresses = ['capella2.gsfc.nasa.gov']
"""Only GCN may connect to the VOEvent broker."""
