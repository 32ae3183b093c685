"""The console's pages, forms and type-ahead endpoints.

Pages read GraceDB through :mod:`gwcelery.tasks.gracedb` (listings only);
forms are checked (:mod:`gwcelery.console.actions`), carried out and
waited for (:mod:`gwcelery.console.runner`), and the result page shows
the task id, the outcome and the GraceDB log line. Each form's action
key (:mod:`gwcelery.console.once`) makes it start at most one action:
a form with a key already used shows the outcome of that key's action.
"""

import dataclasses
import functools
import itertools

import requests
from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
)

from .. import app as celery_app
from ..tasks import circulars, gracedb, lifecycle, lifecycle_plan
from . import actions, auth, once, runner

blueprint = Blueprint('console', __name__)

#: Labels that tell a superevent's state, by what they are about.
STATE_LABELS = {
    'alerts': ('EM_READY', 'GCN_PRELIM_SENT', 'RAVEN_ALERT', 'EM_COINC'),
    'signoff': ('ADVREQ', 'ADVOK', 'ADVNO'),
    'dq': ('DQOK', 'DQV', 'INJ'),
}

#: The first letters of the superevent ids of each category.
CATEGORY_PREFIXES = {'Production': 'S', 'Test': 'TS', 'MDC': 'MS'}

#: HTTP status of the result page of each outcome.
OUTCOME_STATUS = {'done': 200, 'refused': 409, 'failed': 502,
                  'timed out': 504}

#: Seconds that a repeated form waits for the first one's outcome beyond
#: its two time-outs (waiting for the superevent, then for the outcome).
REPLAY_MARGIN = 10

#: Why a form without a valid action key is refused (400).
NO_KEY = ('The form has no valid action key (an old page, or a script '
          'that sends none): reload the page and submit it again.')


@blueprint.before_request
def authenticate_and_check_form():
    """Every request needs a user; every POST the session's form
    token."""
    auth.current_user()
    auth.check_csrf()


@blueprint.app_context_processor
def template_helpers():
    """Values every template may use."""
    return {'csrf_token': auth.csrf_token, 'csrf_field': auth.CSRF_FIELD,
            'new_action_key': once.new_key, 'action_key_field': once.FIELD,
            'gracedb_page': circulars.superevent_page}


def _not_found_to_404(error):
    response = getattr(error, 'response', None)
    if response is not None and response.status_code == 404:
        abort(404, description='GraceDB has no such object')
    raise error


def get_superevent(superevent_id):
    """The superevent, or 404 for a malformed or unknown id."""
    if not actions.is_superevent_id(superevent_id):
        abort(404, description=f'{superevent_id!r} is not a superevent id')
    try:
        return gracedb.get_superevent(superevent_id)
    except requests.HTTPError as error:
        _not_found_to_404(error)


def get_event_or_none(graceid):
    """The event ``graceid``, or ``None`` if GraceDB has none."""
    try:
        return gracedb.get_event(graceid)
    except requests.HTTPError as error:
        if error.response is not None and error.response.status_code in (
                400, 404):
            return None
        raise


def latest_superevents(count, prefix=''):
    """The latest ``count`` superevents of every category (GraceDB
    searches one category at a time; Production by default) whose ids
    start with ``prefix``."""
    found = []
    for category in CATEGORY_PREFIXES:
        if not prefix.startswith(CATEGORY_PREFIXES[category]) and not \
                CATEGORY_PREFIXES[category].startswith(prefix):
            continue
        search = gracedb.client().superevents.search(
            query=f'category: {category}', sort='-created', count=count)
        found += [superevent for superevent in itertools.islice(search, count)
                  if superevent['superevent_id'].startswith(prefix)]
    found.sort(key=lambda superevent: superevent['created'], reverse=True)
    return found[:count]


def state_of(superevent):
    """The superevent's labels sorted by what they tell
    (:data:`STATE_LABELS`)."""
    labels = superevent['labels']
    return {key: [label for label in names if label in labels]
            for key, names in STATE_LABELS.items()}


def event_rows(superevent):
    """The superevent's events with their FAR, SNR, pipeline and whether
    they have a sky map."""
    rows = []
    for graceid in superevent.get('gw_events', ()):
        event = gracedb.get_event(graceid)
        files = [entry.get('filename') or ''
                 for entry in gracedb.get_log(graceid)]
        rows.append({
            'graceid': graceid, 'pipeline': event.get('pipeline'),
            'search': event.get('search'), 'far': event.get('far'),
            'snr': (event.get('extra_attributes', {})
                    .get('CoincInspiral', {}).get('snr')),
            'skymap': any(name.endswith(lifecycle_plan.FITS_SUFFIXES)
                          for name in files),
            'preferred': graceid == superevent['preferred_event']})
    return rows


@blueprint.route('/')
def index():
    """The latest superevents and their state."""
    count = celery_app.conf.console_superevent_count
    superevents = latest_superevents(count)
    for superevent in superevents:
        superevent['state'] = state_of(superevent)
        superevent['notices'] = [
            voevent['voevent_type'] for voevent in
            gracedb.get_voevents(superevent['superevent_id'])]
    return render_template('console/index.html', superevents=superevents,
                           user=auth.current_user())


@blueprint.route('/superevents/<superevent_id>')
def superevent(superevent_id):
    """One superevent: its state, events, files and the action forms."""
    found = get_superevent(superevent_id)
    log_entries = gracedb.get_log(superevent_id)
    return render_template(
        'console/superevent.html', superevent=found,
        state=state_of(found), events=event_rows(found),
        notices=lifecycle.notices_sent(log_entries),
        skymaps=actions.skymap_versions(log_entries),
        em_brights=actions.product_versions(log_entries, 'em_bright.json'),
        p_astros=actions.product_versions(log_entries, '.p_astro.json'),
        user=auth.current_user())


def action_timeout():
    """Seconds an action's outcome is waited for."""
    return (current_app.config.get('CONSOLE_ACTION_TIMEOUT')
            or celery_app.conf.console_action_timeout)


def show(result, superevent_id, replayed=None):
    """The result page of an action (``replayed``: the record of the
    key, when this form repeats an earlier one)."""
    return (render_template('console/result.html', result=result,
                            superevent_id=superevent_id, replayed=replayed),
            OUTCOME_STATUS[result.state])


def replay(key, record, superevent_id=None):
    """Show the outcome of the action that ``key`` started (waiting for
    it as the first request does); start nothing."""
    if record['path'] != request.path:
        abort(400, description='This action key belongs to another form: '
                               'reload the page and submit it again.')
    if record['result'] is None:
        record = once.wait_for_result(
            key, 2 * action_timeout() + REPLAY_MARGIN) or record
    if record['result'] is not None:
        return show(runner.Result(**record['result']), superevent_id,
                    record)
    unknown = runner.Result(
        request.endpoint.rpartition('.')[2], record['task_id'] or '',
        'timed out', 'this form was already submitted and its outcome is '
        'not known yet: look at the superevent before trying again')
    return show(unknown, superevent_id, record)


def once_per_key(view):
    """Refuse a POST to ``view`` without an action key (400), and answer
    one whose key was used with that key's outcome (:func:`replay`),
    before the form is even checked: the first submission may have
    changed what the checks look at."""
    @functools.wraps(view)
    def checked(**kwargs):
        if request.method == 'POST':
            key = request.form.get(once.FIELD, '')
            if not once.is_valid(key):
                abort(400, description=NO_KEY)
            record = once.lookup(key)
            if record is not None:
                return replay(key, record, kwargs.get('superevent_id'))
        return view(**kwargs)
    return checked


def claimed(action, superevent_id, carry_out):
    """Claim the form's action key, then ``carry_out(user, started)``
    (which returns a :class:`~gwcelery.console.runner.Result`) and show
    its outcome; if another request claimed the key first, show that
    one's outcome instead."""
    key = request.form[once.FIELD]
    user = auth.current_user()
    record = once.claim(key, request.path, user)
    if record is not None:
        return replay(key, record, superevent_id)
    try:
        result = carry_out(user, functools.partial(once.record_task, key))
    except Exception:
        # Repeats of this form must not wait for an outcome that will
        # never be recorded (the error itself goes to Flask's log).
        task_id = (once.lookup(key) or {}).get('task_id') or ''
        once.record_result(key, dataclasses.asdict(runner.Result(
            action, task_id, 'failed', 'the console failed while carrying '
            'out this action: look at the superevent before trying again')))
        raise
    once.record_result(key, dataclasses.asdict(result))
    return show(result, superevent_id)


def run(action, superevent_id, argument=None, **form):
    """Start ``action`` once for this form's key, wait for it and render
    its result page."""
    return claimed(action, superevent_id, lambda user, started:
                   runner.carry_out(action, superevent_id, user,
                                    timeout=action_timeout(),
                                    argument=argument, started=started,
                                    **form))


def refuse(why, superevent_id=None):
    """Render a form error (400), unless the form's key was claimed
    since it was looked up: a repeat checked after its first submission
    changed the superevent shows that one's outcome."""
    key = request.form.get(once.FIELD, '')
    record = once.lookup(key) if once.is_valid(key) else None
    if record is not None:
        return replay(key, record, superevent_id)
    return render_template('console/refused.html', why=why,
                           superevent_id=superevent_id), 400


@blueprint.route('/superevents/<superevent_id>/preliminary',
                 methods=['POST'])
@once_per_key
def preliminary(superevent_id):
    """Send the preliminary alert of the superevent now."""
    get_superevent(superevent_id)
    return run('preliminary', superevent_id)


@blueprint.route('/superevents/<superevent_id>/preferred-event',
                 methods=['POST'])
@once_per_key
def preferred_event(superevent_id):
    """Make one of the superevent's events its preferred event."""
    found = get_superevent(superevent_id)
    graceid = request.form.get('graceid', '').strip()
    why = actions.check_preferred(found, graceid)
    if why is not None:
        return refuse(why, superevent_id)
    return run('preferred', superevent_id, argument=graceid,
               graceid=graceid)


@blueprint.route('/superevents/<superevent_id>/update', methods=['POST'])
@once_per_key
def update(superevent_id):
    """Send an Update notice with the chosen sky map and classification
    files (the latest of each kind not chosen)."""
    get_superevent(superevent_id)
    names = [request.form.get(key, '').strip()
             for key in ('skymap', 'em_bright', 'p_astro')]
    why = actions.check_update(gracedb.get_log(superevent_id), names)
    if why is not None:
        return refuse(why, superevent_id)
    return run('update', superevent_id, skymap=names[0],
               em_bright=names[1], p_astro=names[2])


@blueprint.route('/superevents/<superevent_id>/retraction',
                 methods=['GET', 'POST'])
@once_per_key
def retraction(superevent_id):
    """The confirmation page of a Retraction (GET); send it once the
    operator typed the superevent id (POST)."""
    found = get_superevent(superevent_id)
    if request.method == 'GET':
        return render_template('console/retraction.html', superevent=found)
    why = actions.check_retraction(superevent_id,
                                   request.form.get('confirmation'))
    if why is not None:
        return refuse(why, superevent_id)
    return run('retraction', superevent_id)


@blueprint.route('/superevents/<superevent_id>/raven-alert',
                 methods=['POST'])
@once_per_key
def raven_alert(superevent_id):
    """Apply RAVEN_ALERT to the superevent and an external event."""
    found = get_superevent(superevent_id)
    external_id = request.form.get('external_id', '').strip()
    external = get_event_or_none(external_id) if external_id else None
    why = actions.check_raven(found, external)
    if why is not None:
        return refuse(why, superevent_id)
    return run('raven', superevent_id, external_id=external_id)


@blueprint.route('/inject', methods=['GET', 'POST'])
@once_per_key
def inject():
    """Upload a mock event or a mock joint GW-GRB event."""
    if request.method == 'GET':
        return render_template('console/inject.html')
    kind = request.form.get('kind')
    if kind not in ('event', 'joint'):
        return refuse('choose a mock event or a mock joint GW-GRB event')
    return claimed('inject', None, lambda user, started: runner.inject(
        kind, user, timeout=action_timeout(), started=started))


@blueprint.route('/api/superevents')
def superevent_ids():
    """Type-ahead: ids of the latest superevents starting with ``q``."""
    prefix = request.args.get('q', '').strip()
    count = celery_app.conf.console_superevent_count
    return jsonify([found['superevent_id']
                    for found in latest_superevents(count, prefix)])


@blueprint.route('/api/superevents/<superevent_id>/files')
def superevent_files(superevent_id):
    """Type-ahead: versioned file names of a superevent containing
    ``q``."""
    get_superevent(superevent_id)
    text = request.args.get('q', '').strip()
    names = actions.file_names(gracedb.get_log(superevent_id))
    return jsonify([name for name in names if text in name])
