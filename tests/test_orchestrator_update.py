"""A preliminary alert after an update makes an alertable event preferred.

The superevent of ``MS220722v.json`` (real GraceDB data) had EM_READY
before its preferred event changed; only an ``update`` alert tells that
the new preferred event is complete and passes the threshold.
"""

import copy
import json
import os

import pytest

from gwcelery.tasks import orchestrator

from .conftest import DATA_DIR


@pytest.fixture
def started(monkeypatch):
    """The superevents whose preliminary alert the handler started."""
    started = []

    class Canvas:
        def __init__(self, superevent):
            self.superevent = superevent

        def delay(self):
            started.append(self.superevent['superevent_id'])

    monkeypatch.setattr(orchestrator, 'preliminary_alert', Canvas)
    return started


def update_alert(labels, far):
    with open(os.path.join(DATA_DIR, 'gracedb', 'MS220722v.json')) as f:
        superevent = json.load(f)
    superevent = copy.deepcopy(superevent)
    superevent['labels'] = labels
    superevent['preferred_event_data']['far'] = far
    return {'uid': superevent['superevent_id'], 'alert_type': 'update',
            'data': superevent, 'object': superevent}


def test_update_to_an_alertable_preferred_event_starts_the_alert(started):
    orchestrator.handle_superevent(update_alert(['EM_READY'], 1e-14))
    assert started == ['MS220722v']


@pytest.mark.parametrize('labels,far', [
    (['EM_READY', 'GCN_PRELIM_SENT'], 1e-14),  # already sent: frozen
    ([], 1e-14),                               # not EM_READY yet
    (['EM_READY'], 1e-6),                      # below the threshold
])
def test_other_updates_start_nothing(started, labels, far):
    orchestrator.handle_superevent(update_alert(labels, far))
    assert started == []
