"""The simulated rapid-response decision of the local deployment, through
the real local GraceDB server's signoff API."""

import pytest

from gwcelery import app
from gwcelery.tasks import first2years, gracedb

from .test_orchestrator import alert, new_superevent


def test_about_one_in_five_decisions_is_no():
    statuses = [first2years.mock_signoff_status(f'MS2601{i:02d}a')
                for i in range(100)]
    assert set(statuses) == {'OK', 'NO'}
    assert 10 <= statuses.count('NO') <= 30
    assert first2years.mock_signoff_status('MS260101a') == \
        first2years.mock_signoff_status('MS260101a')


@pytest.mark.usefixtures('gracedb')
def test_signoff_follows_advreq(coinc_bytes, monkeypatch, broker_app):
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'mock_events_interval', 60)
    event = gracedb.create_event(coinc_bytes, 'MDC', 'gstlal', 'CBC',
                                 filename='coinc.xml')
    superevent_id = new_superevent(event)
    assert superevent_id.startswith('MS')
    superevent = gracedb.get_superevent(superevent_id)

    # Other labels, or no mock events: no decision.
    first2years.schedule_mock_signoff(
        alert('label_added', superevent, {'name': 'EM_READY'}))
    monkeypatch.setitem(app.conf, 'mock_events_interval', None)
    first2years.schedule_mock_signoff(
        alert('label_added', superevent, {'name': 'ADVREQ'}))
    assert gracedb.client().superevents[superevent_id].get()[
        'labels'] == []

    monkeypatch.setitem(app.conf, 'mock_events_interval', 60)
    gracedb.create_label('ADVREQ', superevent_id)
    for _ in range(2):  # a repeated alert signs off once, quietly
        first2years.schedule_mock_signoff(
            alert('label_added', superevent, {'name': 'ADVREQ'}))
    status = first2years.mock_signoff_status(superevent_id)
    assert gracedb.get_labels(superevent_id) == [f'ADV{status}']
