"""Handlers that record what the listeners dispatch, for the listener tests.

Test workers load this module with ``--include tests.listener_tasks``.
Each handler appends what it received to a Redis list in the broker's
Redis, where the test reads it back: :data:`GCN_KEY` gets the raw VOEvent
bytes, :data:`LVALERT_KEY` the node and alert as JSON.
"""

import json

import redis

from gwcelery import app
from gwcelery.tasks import gcn, lvalert

GCN_KEY = 'test:gcn:received'
LVALERT_KEY = 'test:lvalert:received'

#: The notice types of the samples in ``tests/data/gcn``.
NOTICE_TYPES = (gcn.NoticeType.FERMI_GBM_ALERT,
                gcn.NoticeType.FERMI_GBM_FLT_POS,
                gcn.NoticeType.FERMI_GBM_FIN_POS,
                gcn.NoticeType.FERMI_GBM_SUBTHRESH,
                gcn.NoticeType.SNEWS,
                gcn.NoticeType.SWIFT_BAT_GRB_POS_ACK)

NODES = ('cbc_gstlal', 'superevent', 'test_listeners')


def _record(key, value):
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        client.rpush(key, value)
    finally:
        client.close()


@gcn.handler(*NOTICE_TYPES, shared=False)
def record_notice(payload):
    """Record the bytes of a GCN notice."""
    assert isinstance(payload, bytes)
    _record(GCN_KEY, payload)


@lvalert.handler(*NODES, shared=False)
def record_alert(alert):
    """Record an LVAlert message."""
    _record(LVALERT_KEY, json.dumps(alert, sort_keys=True))
