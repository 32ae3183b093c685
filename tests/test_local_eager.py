"""The main loop of ``gwcelery local --eager``
(:func:`gwcelery.tools.local_eager.dispatch_alerts`) survives hostile
alerts: each alert is handed on, and only readable ones are described."""

import json
import queue
import types

import pytest

from gwcelery.tools.local_eager import dispatch_alerts

VALID = json.dumps({'uid': 'S1', 'alert_type': 'label_added',
                    'data': {'name': 'ADVREQ'},
                    'object': {'superevent_id': 'S1'}})


@pytest.mark.parametrize('hostile', [
    '[' * 100000 + ']' * 100000, b'\xff\xfe', '[1, 2]', 'not json'])
def test_a_hostile_alert_does_not_stop_the_loop(hostile):
    alerts = types.SimpleNamespace(queue=queue.Queue())
    alerts.queue.put(('superevent', hostile))
    alerts.queue.put(('superevent', VALID))
    handed_on, lines = [], []

    def stop_when_drained():
        if alerts.queue.empty() and len(handed_on) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dispatch_alerts(alerts, None, None,
                        lambda node, message: handed_on.append(message),
                        lines.append, stop_when_drained)
    assert handed_on == [hostile, VALID]
    assert lines == ['S1: rapid-response sign-off requested (ADVREQ)']
