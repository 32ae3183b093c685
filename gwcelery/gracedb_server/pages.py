"""HTML pages for people: the superevent list and the superevent and event
pages (labels, members, log with inline images, files, VOEvents)."""

import mimetypes
from urllib.parse import quote

from flask import Blueprint, redirect, render_template, request

from .current import store
from .errors import ApiError
from .identifiers import gps_to_utc

blueprint = Blueprint('pages', __name__, template_folder='templates')

#: Rows on one page of the superevent list.
PAGE_SIZE = 50


@blueprint.app_template_filter('utc')
def utc_filter(gps):
    """Format a GPS time as its UTC date and time."""
    if gps is None:
        return ''
    return gps_to_utc(gps).strftime('%Y-%m-%d %H:%M:%S UTC')


@blueprint.app_template_filter('far')
def far_filter(far):
    """Format a FAR in Hz with its inverse in years."""
    if far is None:
        return ''
    if far <= 0:
        return f'{far:.3g} Hz'
    return f'{far:.3g} Hz (1 per {1 / far / 31557600:.3g} yr)'


@blueprint.app_template_filter('is_image')
def is_image_filter(filename):
    mimetype, _ = mimetypes.guess_type(filename or '')
    return bool(mimetype) and mimetype.startswith('image/')


@blueprint.app_template_filter('urlquote')
def urlquote_filter(text):
    return quote(text or '')


@blueprint.route('/')
def index():
    return redirect('/superevents/')


@blueprint.route('/superevents')
def superevent_list():
    query = request.args.get('query', 'category: Production Test MDC')
    try:
        start = max(0, int(request.args.get('start', 0)))
    except ValueError:
        start = 0
    error = None
    try:
        superevents, total = store().search_superevents(
            query, '-created', start, PAGE_SIZE)
    except ApiError as exc:
        superevents, total, error = [], 0, exc.message
    return render_template('superevents.html', superevents=superevents,
                           total=total, start=start, page_size=PAGE_SIZE,
                           query=query, error=error)


@blueprint.route('/superevents/<superevent_id>/view')
def superevent_page(superevent_id):
    superevent = store().get_superevent(superevent_id)
    sid = superevent['superevent_id']
    events = [store().get_event(graceid)
              for graceid in store().superevent_events(sid)]
    return render_template(
        'superevent.html', superevent=superevent, events=events,
        labels=store().labels(sid), logs=store().logs(sid),
        files=store().files(sid), voevents=store().voevents(sid),
        signoffs=store().signoffs(sid),
        file_base=f'/api/superevents/{sid}/files/')


@blueprint.route('/events/<graceid>/view')
def event_page(graceid):
    event = store().get_event(graceid)
    graceid = event['graceid']
    return render_template(
        'event.html', event=event, labels=store().labels(graceid),
        logs=store().logs(graceid), files=store().files(graceid),
        voevents=store().voevents(graceid),
        file_base=f'/api/events/{graceid}/files/')
