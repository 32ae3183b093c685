"""A console form submitted twice starts one action (action keys).

Flask's test client in the eager mode against the real local GraceDB
server and the real Redis (the keys' claims, the superevent lock, the
queue of :func:`gwcelery.tasks.gcn.send`), as in ``test_console.py``,
whose fixtures these tests share. Two requests run in parallel threads,
released together by a barrier, as a double click or two tabs send them.
"""

import re
import threading

import pytest

from gwcelery.console import auth, create_app, once, runner
from gwcelery.tasks import gracedb, lifecycle

from .test_console import (  # noqa: F401 (fixtures)
    comments,
    eager,
    post,
    small_skymap,
    superevent_id,
)
from .test_orchestrator import queued_voevents

#: Seconds an action is waited for: long enough for a parallel one that
#: waits for the superevent's lock first.
ACTION_TIMEOUT = 30


def console_client():
    """A new browser: its own session and form token."""
    flask_app = create_app(action_timeout=ACTION_TIMEOUT)
    flask_app.testing = True
    return flask_app.test_client()


def post_together(url, forms):
    """POST each form from its own client in its own thread, all at once;
    return the responses (status, text) in the order of ``forms``."""
    barrier = threading.Barrier(len(forms))
    answers = [None] * len(forms)

    def submit(index, form):
        client = console_client()
        client.get('/inject')  # the session's form token
        barrier.wait(timeout=30)
        response = post(client, url, **form)
        answers[index] = (response.status_code,
                          response.get_data(as_text=True))

    threads = [threading.Thread(target=submit, args=item)
               for item in enumerate(forms)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=4 * ACTION_TIMEOUT)
    assert all(answer is not None for answer in answers), answers
    return answers


def named(sid, text, alert_type='Update'):
    """The notice file (``S...-N-Update.xml``) that a result page names."""
    found = re.findall(rf'{sid}-\d+-{alert_type}\.xml', text)
    assert found, text
    return found[0]


def task_id(text):
    return re.search(r'id="task-id">([^<]*)<', text).group(1)


def update_notices(sid):
    """The Update notices of the superevent, as its log and the GCN
    queue each tell (both must agree)."""
    in_log = lifecycle.notices_sent(gracedb.get_log(sid)).count('Update')
    queued = [payload for payload in queued_voevents()
              if re.search(rf'{sid}-\d+-Update'.encode(), payload)]
    assert in_log == len(queued)
    return in_log


@pytest.fixture
def prelim_sent(superevent_id):  # noqa: F811 (the imported fixture)
    """The superevent after its preliminary notice (an Update needs a
    public notice first)."""
    client = console_client()
    done = post(client, f'/superevents/{superevent_id}/preliminary')
    assert done.status_code == 200, done.get_data(as_text=True)
    return superevent_id


def test_one_key_sends_one_notice(prelim_sent):
    sid = prelim_sent
    url = f'/superevents/{sid}/update'
    key = once.new_key()
    answers = post_together(url, [{'key': key}, {'key': key}])
    assert [status for status, _ in answers] == [200, 200], answers
    texts = [text for _, text in answers]
    # One task started, one notice sent, and both pages name it.
    assert update_notices(sid) == 1
    assert named(sid, texts[0]) == named(sid, texts[1])
    assert task_id(texts[0]) == task_id(texts[1]) != ''
    assert sum('asked for an Update notice' in comment
               for comment in comments(sid)) == 1
    assert sum('id="replayed"' in text for text in texts) == 1

    # Later (a reloaded result page, the browser's Back): the same page.
    again = post(console_client(), url, key=key)
    assert again.status_code == 200
    assert 'id="replayed"' in again.get_data(as_text=True)
    assert named(sid, again.get_data(as_text=True)) == named(sid, texts[0])
    assert update_notices(sid) == 1
    # The key is this form's only: another form refuses it.
    other = post(console_client(), f'/superevents/{sid}/preliminary',
                 key=key)
    assert other.status_code == 400
    assert 'belongs to another form' in other.get_data(as_text=True)


def test_different_keys_send_a_notice_each(prelim_sent):
    sid = prelim_sent
    url = f'/superevents/{sid}/update'
    answers = post_together(url, [{}, {}])  # a fresh key each
    assert [status for status, _ in answers] == [200, 200], answers
    assert update_notices(sid) == 2
    # Each page names the notice of its own task, not the latest one.
    names = {named(sid, text) for _, text in answers}
    sent = {entry['filename'] for entry in gracedb.get_log(sid)
            if entry['comment'] == 'VOEvent sent to GCN'
            and entry['filename'].endswith('-Update.xml')}
    assert names == sent and len(names) == 2


def test_a_repeated_form_is_not_checked_again(
        superevent_id, monkeypatch):  # noqa: F811 (the imported fixture)
    # The second submission of "make G2 preferred" would be refused as
    # "already the preferred event": it shows the first's outcome.
    sid = superevent_id
    superevent = gracedb.get_superevent(sid)
    new = next(graceid for graceid in superevent['gw_events']
               if graceid != superevent['preferred_event'])
    client = console_client()
    key = once.new_key()
    url = f'/superevents/{sid}/preferred-event'
    first = post(client, url, key=key, graceid=new)
    second = post(client, url, key=key, graceid=new)
    for response in (first, second):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert f'preferred event is now {new}' in \
            response.get_data(as_text=True)
    assert 'id="replayed"' in second.get_data(as_text=True)

    # A repeat that looked the key up just before the first claimed it
    # (the first lookup answers "not claimed"), and is checked after the
    # first changed the superevent: the refusal gives way to the outcome.
    lookup = once.lookup
    calls = []
    monkeypatch.setattr(once, 'lookup', lambda key: lookup(key)
                        if calls.append(key) or len(calls) > 1 else None)
    third = post(client, url, key=key, graceid=new)
    assert len(calls) == 2
    assert third.status_code == 200, third.get_data(as_text=True)
    assert 'id="replayed"' in third.get_data(as_text=True)
    assert sum('asked for a new preferred event' in comment
               for comment in comments(sid)) == 1


def test_every_form_that_acts_needs_a_key():
    # Every POST route of the console, present and future: without a
    # key (an old page, a script) it is refused before anything is read
    # or started, with the reason.
    flask_app = create_app()
    client = flask_app.test_client()
    client.get('/inject')
    with client.session_transaction() as session:
        csrf = session[auth.CSRF_KEY]
    rules = [rule.rule for rule in flask_app.url_map.iter_rules()
             if 'POST' in rule.methods]
    assert len(rules) == 6, rules
    for rule in rules:
        url = rule.replace('<superevent_id>', 'MS000101a')
        refused = client.post(url, data={auth.CSRF_FIELD: csrf})
        assert refused.status_code == 400, url
        assert 'reload the page' in refused.get_data(as_text=True)


def test_a_failed_action_is_not_waited_for_again(broker_app, monkeypatch):
    # The console itself fails after claiming the key (here: before the
    # injection starts): its repeat shows the failure at once, instead
    # of waiting for an outcome that will never come.
    def broken(*args, **kwargs):
        raise ConnectionError('the broker went away')

    monkeypatch.setattr(runner, 'inject', broken)
    client = create_app(action_timeout=ACTION_TIMEOUT).test_client()
    key = once.new_key()
    first = post(client, '/inject', key=key, kind='event')
    assert first.status_code == 500
    second = post(client, '/inject', key=key, kind='event')
    assert second.status_code == 502  # not 504 after waiting in vain
    text = second.get_data(as_text=True)
    assert 'id="replayed"' in text and 'the console failed' in text
