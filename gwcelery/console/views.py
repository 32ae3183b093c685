"""The console's pages, forms and type-ahead endpoints.

Pages read GraceDB through :mod:`gwcelery.tasks.gracedb` (listings only);
forms are checked (:mod:`gwcelery.console.actions`), carried out and
waited for (:mod:`gwcelery.console.runner`), and the result page shows
the task id, the outcome and the GraceDB log line.
"""

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
from . import actions, auth, runner

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


def run(action, found, log_entries, argument=None, **form):
    """Start ``action``, wait for it and render its result page."""
    superevent_id = found['superevent_id']
    result = runner.start(action, found, auth.current_user(), **form)
    outcome = runner.wait(action, superevent_id, result,
                          actions.last_number(log_entries),
                          timeout=current_app.config.get(
                              'CONSOLE_ACTION_TIMEOUT'),
                          argument=argument)
    return (render_template('console/result.html', result=outcome,
                            superevent_id=superevent_id),
            OUTCOME_STATUS[outcome.state])


def refuse(why, superevent_id=None):
    """Render a form error (400)."""
    return render_template('console/refused.html', why=why,
                           superevent_id=superevent_id), 400


@blueprint.route('/superevents/<superevent_id>/preliminary',
                 methods=['POST'])
def preliminary(superevent_id):
    """Send the preliminary alert of the superevent now."""
    found = get_superevent(superevent_id)
    return run('preliminary', found, gracedb.get_log(superevent_id))


@blueprint.route('/superevents/<superevent_id>/preferred-event',
                 methods=['POST'])
def preferred_event(superevent_id):
    """Make one of the superevent's events its preferred event."""
    found = get_superevent(superevent_id)
    graceid = request.form.get('graceid', '').strip()
    why = actions.check_preferred(found, graceid)
    if why is not None:
        return refuse(why, superevent_id)
    return run('preferred', found, gracedb.get_log(superevent_id),
               argument=graceid, graceid=graceid)


@blueprint.route('/superevents/<superevent_id>/update', methods=['POST'])
def update(superevent_id):
    """Send an Update notice with the chosen sky map and classification
    files (the latest of each kind not chosen)."""
    found = get_superevent(superevent_id)
    log_entries = gracedb.get_log(superevent_id)
    names = [request.form.get(key, '').strip()
             for key in ('skymap', 'em_bright', 'p_astro')]
    why = actions.check_update(log_entries, names)
    if why is not None:
        return refuse(why, superevent_id)
    return run('update', found, log_entries, skymap=names[0],
               em_bright=names[1], p_astro=names[2])


@blueprint.route('/superevents/<superevent_id>/retraction',
                 methods=['GET', 'POST'])
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
    return run('retraction', found, gracedb.get_log(superevent_id))


@blueprint.route('/superevents/<superevent_id>/raven-alert',
                 methods=['POST'])
def raven_alert(superevent_id):
    """Apply RAVEN_ALERT to the superevent and an external event."""
    found = get_superevent(superevent_id)
    external_id = request.form.get('external_id', '').strip()
    external = get_event_or_none(external_id) if external_id else None
    why = actions.check_raven(found, external)
    if why is not None:
        return refuse(why, superevent_id)
    return run('raven', found, gracedb.get_log(superevent_id),
               external_id=external_id)


@blueprint.route('/inject', methods=['GET', 'POST'])
def inject():
    """Upload a mock event or a mock joint GW-GRB event."""
    if request.method == 'GET':
        return render_template('console/inject.html')
    kind = request.form.get('kind')
    if kind not in ('event', 'joint'):
        return refuse('choose a mock event or a mock joint GW-GRB event')
    outcome = runner.inject(kind, auth.current_user(),
                            timeout=current_app.config.get(
                                'CONSOLE_ACTION_TIMEOUT'))
    return (render_template('console/result.html', result=outcome,
                            superevent_id=None),
            OUTCOME_STATUS[outcome.state])


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
