"""Preset for the test deployment (gracedb-test.ligo.org)."""

from .playground import *  # noqa: F403

gracedb_host = 'gracedb-test.ligo.org'
"""Test GraceDB."""

gracedb_url = f'https://{gracedb_host}/api/'
"""Test GraceDB API."""

lvalert_host = 'lvalert-test.cgca.uwm.edu'
"""Test LVAlert server."""
