"""The compiler of superevent queries."""

from ..identifiers import CATEGORIES, GW_ID_RE, SUPEREVENT_ID_RE
from .parser import (
    GRACEID_TERM_RE,
    Parser,
    QueryError,
    datetime_to_unix,
    number_or_none,
)


class SupereventQuery(Parser):
    """Compile a superevent query."""

    object_column = 'superevents.superevent_id'
    attributes = {
        't_0': 'superevents.t_0', 'gpstime': 'superevents.t_0',
        't_start': 'superevents.t_start', 't_end': 'superevents.t_end',
        'time_coinc_far': 'superevents.time_coinc_far',
        'space_coinc_far': 'superevents.space_coinc_far',
        'far': '(SELECT far FROM events WHERE events.graceid = '
               'superevents.preferred_event)',
    }

    def __init__(self, text):
        super().__init__(text)
        self.has_category = False

    def category_term(self):
        """One or more category names (ORed)."""
        names = []
        while self.at('word') or self.at('string'):
            code = self.category_code(self.peek().text)
            if code is None:
                break
            self.next()
            names.append(code)
        if not names:
            raise QueryError('Expected a category: Production, Test or MDC')
        self.has_category = True
        return f'superevents.category IN ({self.bind(*names)})'

    @staticmethod
    def category_code(text):
        """The category code that ``text`` names, or ``None``."""
        for code, name in CATEGORIES.items():
            if text.lower() == name.lower():
                return code
        return None

    def id_term(self):
        """One or more superevent ids or GW ids (ORed)."""
        ids = [self.value_token()]
        while self.at('word') and (SUPEREVENT_ID_RE.match(self.peek().text)
                                   or GW_ID_RE.match(self.peek().text)):
            ids.append(self.next().text)
        return (f'(superevents.superevent_id IN ({self.bind(*ids)}) OR '
                f'superevents.gw_id IN ({self.bind(*ids)}))')

    def event_number(self, text):
        """The number of a graceid."""
        match = GRACEID_TERM_RE.match(text)
        if match is None:
            raise QueryError(f'Invalid graceid {text!r}')
        return int(match.group(2))

    def word_term(self, text):
        if number_or_none(text) is not None and not self.at('op', offset=1):
            return self.range_term('superevents.t_0')
        if SUPEREVENT_ID_RE.match(text) or GW_ID_RE.match(text):
            return self.id_term()
        if self.category_code(text) is not None:
            return self.category_term()
        return None

    def key_term(self, key):
        if key in ('id', 'superevent_id', 'superevent', 'gw_id'):
            return self.id_term()
        if key in ('t_0', 'gpstime', 't_start', 't_end'):
            return self.range_term(self.attributes[key])
        if key == 'category':
            return self.category_term()
        if key in ('event', 'events'):
            numbers = [self.event_number(self.value_token())]
            while self.at('word') and GRACEID_TERM_RE.match(self.peek().text):
                numbers.append(self.event_number(self.next().text))
            return (f'superevents.superevent_id IN (SELECT superevent FROM '
                    f'events WHERE id IN ({self.bind(*numbers)}))')
        if key == 'preferred_event':
            first = self.event_number(self.value_token())
            column = ('CAST(substr(superevents.preferred_event, 2) AS '
                      'INTEGER)')
            if self.at('range'):
                self.next()
                last = self.event_number(self.value_token())
                return (f'{column} BETWEEN {self.bind(first)} AND '
                        f'{self.bind(last)}')
            return f'{column} = {self.bind(first)}'
        if key == 'is_gw':
            return self.boolean_term('superevents.gw_id IS NOT NULL')
        if key == 'is_exposed':
            return self.boolean_term(
                "EXISTS (SELECT 1 FROM permissions WHERE "
                "permissions.superevent = superevents.superevent_id AND "
                "permissions.grp = 'public_users')")
        if key == 'submitter':
            return self.string_term('superevents.submitter')
        if key == 'created':
            return self.range_term('superevents.created', datetime_to_unix)
        if key in ('label', 'labels'):
            return self.expression()
        if key in self.attributes:
            if self.at('op'):
                return self.comparison(key)
            return self.range_term(self.attributes[key])
        raise QueryError(f'Unknown query keyword {key + ":"!r}')

    def defaults(self):
        """Production superevents only, unless a category is given."""
        return [] if self.has_category else ["superevents.category = 'P'"]
