"""The lifecycle's decisions: pure functions of labels and logs."""

import pytest

from gwcelery.tasks import lifecycle, lifecycle_plan


def sent_entry(filename):
    return {'N': 9, 'comment': 'VOEvent sent to GCN', 'filename': filename,
            'file_version': 1, 'tag_names': ['em_follow']}


def test_notices_sent_reads_only_the_sent_uploads():
    log_entries = [
        {'N': 1, 'comment': 'Added label: EM_READY', 'filename': '',
         'file_version': None, 'tag_names': []},
        # GraceDB's own file of a record: registered, not yet sent.
        {'N': 2, 'comment': 'New VOEvent', 'filename':
         'S1-1-Preliminary.xml', 'file_version': 0, 'tag_names': []},
        sent_entry('S1-1-Preliminary.xml'),
        sent_entry('S1-2-Initial.xml'),
    ]
    assert lifecycle.notices_sent(log_entries) == ['Preliminary', 'Initial']


@pytest.mark.parametrize('labels,sent,blocked', [
    ([], [], None),
    (['GCN_PRELIM_SENT', 'ADVREQ'], ['Preliminary'], None),
    (['ADVOK'], [], 'an operator decided (ADVOK)'),
    (['ADVNO'], ['Preliminary'], 'an operator decided (ADVNO)'),
    ([], ['Preliminary', 'Retraction'], 'the superevent was retracted'),
    (['DQV'], [], 'its data quality vetoes it (DQV)'),
    (['INJ'], [], 'it is an injection (INJ)'),
])
def test_automatic_alert_blocked(labels, sent, blocked):
    assert lifecycle_plan.automatic_alert_blocked(labels, sent) == blocked


@pytest.mark.parametrize('label,labels,sent,planned', [
    ('ADVOK', ['ADVOK'], ['Preliminary'], 'Initial'),
    ('ADVOK', ['ADVOK'], ['EarlyWarning', 'Preliminary'], 'Initial'),
    ('ADVOK', ['ADVOK'], [], None),
    ('ADVOK', ['ADVOK'], ['Preliminary', 'Initial'], None),
    ('ADVOK', ['ADVOK', 'INJ'], ['Preliminary'], None),
    ('ADVNO', ['ADVNO'], ['Preliminary'], 'Retraction'),
    ('ADVNO', ['ADVNO'], ['Preliminary', 'Initial', 'Update'],
     'Retraction'),
    ('ADVNO', ['ADVNO'], [], None),
    ('ADVNO', ['ADVNO'], ['Preliminary', 'Retraction'], None),
    ('ADVOK', ['ADVOK'], ['Preliminary', 'Retraction'], None),
])
def test_plan_signoff(label, labels, sent, planned):
    alert_type, why_not = lifecycle_plan.plan_signoff(label, labels, sent)
    assert alert_type == planned
    assert (why_not is None) == (planned is not None)


@pytest.mark.parametrize('labels,sent,allowed', [
    ([], ['Preliminary'], True),
    (['ADVOK'], ['Preliminary', 'Initial'], True),
    ([], [], False),
    (['ADVNO'], ['Preliminary'], False),
    ([], ['Preliminary', 'Retraction'], False),
    (['INJ'], ['Preliminary'], False),
])
def test_plan_update(labels, sent, allowed):
    assert (lifecycle_plan.plan_update(labels, sent) is None) == allowed


LOG = [
    {'N': 1, 'filename': 'bayestar.multiorder.fits', 'file_version': 0,
     'tag_names': ['sky_loc', 'public']},
    {'N': 2, 'filename': 'em_bright.json', 'file_version': 0,
     'tag_names': ['em_bright']},
    {'N': 3, 'filename': 'gstlal.p_astro.json', 'file_version': 0,
     'tag_names': ['p_astro']},
    {'N': 4, 'filename': 'bilby.multiorder.fits', 'file_version': 0,
     'tag_names': ['sky_loc']},
    {'N': 5, 'filename': 'bayestar.multiorder.fits', 'file_version': 1,
     'tag_names': ['sky_loc']},
    {'N': 6, 'filename': 'psd.fits', 'file_version': 0, 'tag_names': []},
]


def test_latest_products_and_their_log_entries():
    names = lifecycle_plan.latest_products(LOG)
    assert names == ('bayestar.multiorder.fits,1', 'em_bright.json,0',
                     'gstlal.p_astro.json,0')
    assert lifecycle_plan.log_numbers(LOG, names) == [2, 3, 5]
    assert lifecycle_plan.latest_products(LOG[:1] + LOG[5:]) == (
        'bayestar.multiorder.fits,0', None, None)


def test_resolve_filename():
    assert lifecycle_plan.resolve_filename('bilby.multiorder.fits', LOG) == \
        'bilby.multiorder.fits,0'
    assert lifecycle_plan.resolve_filename(
        'bayestar.multiorder.fits', LOG) == 'bayestar.multiorder.fits,1'
    assert lifecycle_plan.resolve_filename('bayestar.multiorder.fits,0', LOG) \
        == 'bayestar.multiorder.fits,0'
    assert lifecycle_plan.resolve_filename('bayestar.multiorder.fits,7', LOG) \
        is None
    assert lifecycle_plan.resolve_filename('nosuch.fits', LOG) is None
