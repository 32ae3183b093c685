"""The compiler of event queries."""

import re

from ..identifiers import SUPEREVENT_ID_RE
from ..vocabulary import GROUPS, PIPELINES, SEARCHES
from .parser import (
    ATTRIBUTE_ALIASES,
    GRACEID_TERM_RE,
    LIST_ATTRIBUTES,
    Parser,
    QueryError,
    datetime_to_unix,
    number_or_none,
)


class EventQuery(Parser):
    """Compile an event query."""

    object_column = 'events.graceid'
    attributes = {
        'far': 'events.far', 'gpstime': 'events.gpstime',
        'likelihood': 'events.likelihood', 'nevents': 'events.nevents',
        'instruments': 'events.instruments', 'search': 'events.search',
        'pipeline': 'events.pipeline', 'group': 'events.grp',
        'submitter': 'events.submitter',
    }

    def attribute_column(self, attribute):
        """The SQL column of an event attribute, or of an
        ``extra_attributes`` entry (``ci.snr``; a list one as a tuple)."""
        prefix, dot, key = attribute.partition('.')
        if dot:
            table = ATTRIBUTE_ALIASES.get(prefix.lower())
            if table is None or not re.fullmatch(r'\w+', key):
                raise QueryError(f'Unknown attribute {attribute!r}')
            if table in LIST_ATTRIBUTES:
                return (f"json_extract(events.extra_attributes, '$.{table}')",
                        key)
            return f"json_extract(events.extra_attributes, '$.{table}.{key}')"
        return super().attribute_column(attribute)

    def graceid_term(self):
        """A graceid or a graceid range ``G1 .. G9``."""
        first = self.value_token()
        match = GRACEID_TERM_RE.match(first)
        if match is None:
            raise QueryError(f'Invalid graceid {first!r}')
        if self.at('range'):
            self.next()
            last = GRACEID_TERM_RE.match(self.value_token())
            if last is None:
                raise QueryError('Invalid graceid range')
            return (f'events.id BETWEEN {self.bind(int(match.group(2)))} AND '
                    f'{self.bind(int(last.group(2)))}')
        return f'events.id = {self.bind(int(match.group(2)))}'

    def word_term(self, text):
        if text.lower() == 'hasfar':
            self.next()
            return 'events.far IS NOT NULL'
        if number_or_none(text) is not None and not self.at('op', offset=1):
            return self.range_term('events.gpstime')
        if GRACEID_TERM_RE.match(text):
            return self.graceid_term()
        for column, vocabulary, what in (
                ('events.grp', GROUPS, 'group'),
                ('events.pipeline', PIPELINES, 'pipeline'),
                ('events.search', SEARCHES, 'search')):
            if (self.match_name(text, vocabulary) is not None
                    and not self.at('op', offset=1)):
                return self.names_term(column, vocabulary, what)
        return None

    def key_term(self, key):
        if key in ('gid', 'graceid', 'id'):
            return self.graceid_term()
        if key == 'group':
            return self.names_term('events.grp', GROUPS, 'group')
        if key == 'pipeline':
            return self.names_term('events.pipeline', PIPELINES, 'pipeline')
        if key == 'search':
            return self.names_term('events.search', SEARCHES, 'search')
        if key == 'gpstime':
            return self.range_term('events.gpstime')
        if key == 'created':
            return self.range_term('events.created', datetime_to_unix)
        if key == 'superevent':
            ids = [self.value_token()]
            while self.at('word') and SUPEREVENT_ID_RE.match(
                    self.peek().text):
                ids.append(self.next().text)
            return (f'events.superevent IN (SELECT superevent_id FROM '
                    f'superevents WHERE superevent_id IN ({self.bind(*ids)}) '
                    f'OR gw_id IN ({self.bind(*ids)}))')
        if key == 'in_superevent':
            return self.boolean_term('events.superevent IS NOT NULL')
        if key == 'is_preferred_event':
            return self.boolean_term(
                'events.graceid IN (SELECT preferred_event FROM superevents)')
        if key == 'submitter':
            return self.string_term('events.submitter')
        if key in ('ifos', 'instruments'):
            ifos = [self.value_token()]
            while self.at('punct', ','):
                self.next()
                ifos.append(self.value_token())
            return ' AND '.join(
                f"(',' || events.instruments || ',') LIKE "
                f"{self.bind(f'%,{ifo},%')}" for ifo in ifos)
        if key == 'nevents':
            return self.range_term('events.nevents', int)
        if key == 'hasfar':
            return self.boolean_term('events.far IS NOT NULL')
        if key in ('label', 'labels'):
            return self.expression()
        if key in self.attributes or '.' in key:
            if self.at('op'):
                return self.comparison(key)
            return self.range_term(self.attributes[key])
        raise QueryError(f'Unknown query keyword {key + ":"!r}')

    def defaults(self):
        """Leave out Test and MDC events unless the query mentions them."""
        lowered = self.text.lower()
        clauses = []
        if 'test' not in lowered:
            clauses.append("events.grp != 'Test'")
        if 'mdc' not in lowered:
            clauses.append("(events.search IS NULL OR events.search != 'MDC')")
        return clauses
