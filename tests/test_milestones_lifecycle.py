"""Milestone lines of the alert lifecycle: the sign-off request, its
result, and each notice sent."""

import pytest

from gwcelery.tools.milestones import describe_alert

SUPEREVENT = {'superevent_id': 'MS180616h', 'preferred_event': 'M1'}


@pytest.mark.parametrize('label,line', [
    ('ADVREQ', 'MS180616h: rapid-response sign-off requested (ADVREQ)'),
    ('ADVOK', 'MS180616h: signed off OK (ADVOK)'),
    ('ADVNO', 'MS180616h: signed off NO (ADVNO)'),
])
def test_signoff_labels(label, line):
    assert describe_alert({'uid': 'MS180616h', 'alert_type': 'label_added',
                           'data': {'name': label},
                           'object': SUPEREVENT}) == line


@pytest.mark.parametrize('alert_type', ['Initial', 'Update', 'Retraction'])
def test_notice_sent(alert_type):
    filename = f'MS180616h-2-{alert_type}.xml'
    alert = {'uid': 'MS180616h', 'alert_type': 'log',
             'data': {'comment': 'VOEvent sent to GCN', 'filename': filename},
             'object': SUPEREVENT}
    assert describe_alert(alert) == \
        f'MS180616h: {alert_type} sent ({filename})'
    # GraceDB's own file of the record is not a notice sent.
    alert['data']['comment'] = 'New VOEvent'
    assert describe_alert(alert) is None
