"""Event and superevent searches, paged with ``start`` and ``count``."""

from urllib.parse import urlencode

from flask import Blueprint, request

from ..current import store
from ..errors import bad_request
from ..responses import json_response

blueprint = Blueprint('search', __name__)

#: Default and largest page sizes of searches.
DEFAULT_COUNT = 10
MAX_COUNT = 1000


def _page_arguments():
    try:
        start = max(0, int(request.args.get('start', 0)))
        count = int(request.args.get('count', DEFAULT_COUNT))
    except ValueError:
        raise bad_request('start and count must be integers') from None
    return start, min(max(count, 1), MAX_COUNT)


def _page_url(count, start):
    """This search's URL for the page of ``count`` results at ``start``."""
    params = {key: value for key, value in request.args.items()
              if key not in ('start', 'count')}
    return request.base_url + '?' + urlencode(
        {**params, 'count': count, 'start': start})


def _page_links(start, count, total, next_when_done):
    last = max(0, (total - 1) // count * count)
    links = {'self': _page_url(count, start), 'first': _page_url(count, 0),
             'last': _page_url(count, last)}
    if start + count < total:
        links['next'] = _page_url(count, start + count)
    elif next_when_done:
        links['next'] = None
    return links


def _search(search):
    """``(start, count, page, total)`` of ``search`` (a store method) run
    with the request's ``query``, ``sort``, ``start`` and ``count``."""
    start, count = _page_arguments()
    page, total = search(request.args.get('query', ''),
                         request.args.get('sort', ''), start, count)
    return start, count, page, total


@blueprint.route('/events', methods=['GET'])
def events_search():
    """Events matching ``query``, optionally only some ``columns``."""
    start, count, events, total = _search(store().search_events)
    columns = [c for c in request.args.get('columns', '').split(',') if c]
    if columns:
        events = [{key: event.get(key) for key in columns}
                  for event in events]
    return json_response({'start': start, 'numRows': total,
                          'events': events,
                          'links': _page_links(start, count, total, False)})


@blueprint.route('/superevents', methods=['GET'])
def superevents_search():
    """Superevents matching ``query``."""
    start, count, superevents, total = _search(store().search_superevents)
    links = _page_links(start, count, total, True)
    links['previous'] = None if start == 0 else _page_url(
        count, max(0, start - count))
    return json_response({'start': start, 'numRows': total,
                          'superevents': superevents, 'links': links})
