"""GraceDB's text query language, compiled to an SQLite ``WHERE`` clause.

Terms separated by spaces are ANDed. A term is one of

* ``key: value`` (for example ``group: CBC Burst``, ``t_0: 1 .. 2``,
  ``superevent: S250101a``, ``event: G123``, ``is_gw: true``,
  ``submitter: "emfollow"``, ``created: 2025-01-01 .. 2025-02-01``);
* a bare GPS time or range ``A .. B`` (``gpstime`` of events, ``t_0`` of
  superevents);
* a bare graceid or graceid range (``G1 .. G9``), superevent id or GW id;
* bare group, pipeline and search names (events) or category names
  (superevents); consecutive names of one kind are ORed (a label with the
  name of a pipeline, such as ``SNEWS``, needs ``label:``);
* a boolean expression of labels and attribute comparisons, with ``~``
  (not), ``&`` or ``,`` (and), ``|`` (or) and parentheses:
  ``EM_READY & ~DQV``, ``far < 1e-6``, ``grbevent.trigger_id = "123"``,
  ``ci.snr > 8`` (aliases ``si``, ``ci``, ``mb``, ``li``, ``grb``, ``inj``).

As GraceDB does, event queries leave out group Test unless the query
mentions "test" and search MDC unless it mentions "mdc"; superevent
queries return Production superevents unless a category is given.
Errors raise :class:`QueryError`.
"""

import datetime
import re

from .identifiers import CATEGORIES, GW_ID_RE, SUPEREVENT_ID_RE, gps_to_utc
from .vocabulary import GROUPS, LABELS, PIPELINES, SEARCHES

TOKEN_RE = re.compile(r'''
    \s*(?:
        (?P<string>"[^"]*"|'[^']*')
      | (?P<range>\.\.)
      | (?P<op><=|>=|!=|==|=|<|>)
      | (?P<punct>[&|~(),])
      | (?P<key>[A-Za-z_][A-Za-z_0-9]*:)
      | (?P<word>(?:(?!\.\.)[^\s&|~()<>=!",])+)
    )''', re.VERBOSE)

GRACEID_TERM_RE = re.compile(r'^([GTMEH])(\d+)$', re.IGNORECASE)

#: ``extra_attributes`` keys of the attribute aliases.
ATTRIBUTE_ALIASES = {
    'si': 'SingleInspiral', 'singleinspiral': 'SingleInspiral',
    'ci': 'CoincInspiral', 'coincinspiral': 'CoincInspiral',
    'coincinspiralevent': 'CoincInspiral',
    'mb': 'MultiBurst', 'multiburst': 'MultiBurst',
    'multiburstevent': 'MultiBurst',
    'li': 'LalInferenceBurst', 'lalinferenceburst': 'LalInferenceBurst',
    'lalinferenceburstevent': 'LalInferenceBurst',
    'grb': 'GRB', 'grbevent': 'GRB',
    'inj': 'SimInspiral', 'siminspiral': 'SimInspiral',
    'siminspiralevent': 'SimInspiral',
}

#: ``extra_attributes`` entries that are lists (one item per detector).
LIST_ATTRIBUTES = ('SingleInspiral',)

SQL_OPERATORS = {'=': '=', '==': '=', '!=': '!=', '<': '<', '<=': '<=',
                 '>': '>', '>=': '>='}


class QueryError(ValueError):
    """The query text cannot be parsed."""


class Token:
    __slots__ = ('kind', 'text')

    def __init__(self, kind, text):
        self.kind = kind
        self.text = text

    def __repr__(self):
        return f'{self.kind}:{self.text}'


def tokenize(text):
    tokens = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = TOKEN_RE.match(text, position)
        if match is None or match.end() == position:
            raise QueryError(f'Invalid query near {text[position:]!r}')
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == 'string':
            value = value[1:-1]
        elif kind == 'key':
            value = value[:-1].lower()
        tokens.append(Token(kind, value))
    return tokens


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


def _datetime_to_unix(text):
    """Unix time of an ISO date/time (UTC) or of a GPS time."""
    number = _number(text)
    if number is not None:
        return gps_to_utc(number).timestamp()
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f'Invalid date/time {text!r}') from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


class Parser:
    """Base of the two compilers: the token stream and shared terms."""

    #: SQL expression of the labelled object's id.
    object_column = None

    #: Plain columns that attribute comparisons may name.
    attributes = {}

    def __init__(self, text):
        self.text = text or ''
        self.tokens = tokenize(self.text)
        self.position = 0
        self.params = []

    # --- token helpers ----------------------------------------------------

    def peek(self, offset=0):
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self):
        token = self.peek()
        if token is None:
            raise QueryError('Unexpected end of query')
        self.position += 1
        return token

    def at(self, kind, text=None, offset=0):
        token = self.peek(offset)
        return (token is not None and token.kind == kind
                and (text is None or token.text == text))

    def value_token(self):
        token = self.next()
        if token.kind not in ('word', 'string'):
            raise QueryError(f'Expected a value, not {token.text!r}')
        return token.text

    def bind(self, *values):
        self.params.extend(values)
        return ', '.join('?' * len(values))

    # --- shared term shapes -----------------------------------------------

    def range_term(self, column, convert=float):
        """``A .. B`` or a single value, compared with ``column``."""
        first = self.value_token()
        low = self._convert(convert, first)
        if self.at('range'):
            self.next()
            high = self._convert(convert, self.value_token())
            return f'{column} BETWEEN {self.bind(low)} AND {self.bind(high)}'
        return f'{column} = {self.bind(low)}'

    @staticmethod
    def _convert(convert, text):
        try:
            return convert(text)
        except (TypeError, ValueError):
            raise QueryError(f'Invalid value {text!r}') from None

    def names_term(self, column, vocabulary, what):
        """One or more names from ``vocabulary`` (ORed)."""
        names = []
        while self.at('word') or self.at('string'):
            name = self.match_name(self.peek().text, vocabulary)
            if name is None:
                if names:
                    break
                raise QueryError(f'Unknown {what} {self.peek().text!r}')
            self.next()
            names.append(name)
        if not names:
            raise QueryError(f'Expected a {what} name')
        return f'{column} IN ({self.bind(*names)})'

    @staticmethod
    def match_name(text, vocabulary):
        for name in vocabulary:
            if name.lower() == text.lower():
                return name
        return None

    def boolean_term(self, column):
        value = self.value_token().lower()
        if value not in ('true', 'false', '1', '0', 'yes', 'no'):
            raise QueryError(f'Expected true or false, not {value!r}')
        truth = value in ('true', '1', 'yes')
        return f'({column}) = {int(truth)}'

    def string_term(self, column):
        return f'{column} = {self.bind(self.value_token())}'

    # --- label and attribute expressions ----------------------------------

    def expression(self):
        terms = [self.and_expression()]
        while self.at('punct', '|'):
            self.next()
            terms.append(self.and_expression())
        return terms[0] if len(terms) == 1 else \
            '(' + ' OR '.join(terms) + ')'

    def and_expression(self):
        terms = [self.unary()]
        while self.at('punct', '&') or self.at('punct', ','):
            self.next()
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else \
            '(' + ' AND '.join(terms) + ')'

    def unary(self):
        if self.at('punct', '~'):
            self.next()
            return f'NOT {self.unary()}'
        if self.at('punct', '('):
            self.next()
            inner = self.expression()
            if not self.at('punct', ')'):
                raise QueryError('Missing closing parenthesis')
            self.next()
            return f'({inner})'
        token = self.next()
        if token.kind not in ('word', 'string'):
            raise QueryError(f'Unexpected {token.text!r}')
        if self.at('op'):
            return self.comparison(token.text)
        label = self.match_name(token.text, LABELS)
        if label is None:
            raise QueryError(f'Unknown query term {token.text!r}')
        return (f'EXISTS (SELECT 1 FROM labels WHERE labels.obj = '
                f'{self.object_column} AND labels.name = {self.bind(label)})')

    def comparison(self, attribute):
        operator = SQL_OPERATORS[self.next().text]
        token = self.next()
        if token.kind not in ('word', 'string'):
            raise QueryError(f'Expected a value after {attribute}')
        if token.kind == 'string' or _number(token.text) is None:
            value, cast = token.text, 'TEXT'
        else:
            value, cast = float(token.text), 'REAL'
        placeholder = self.bind(value)
        column = self.attribute_column(attribute)
        if isinstance(column, tuple):  # list attribute: any item matches
            source, key = column
            return (f'EXISTS (SELECT 1 FROM json_each({source}) WHERE '
                    f"CAST(json_extract(value, '$.{key}') AS {cast}) "
                    f'{operator} {placeholder})')
        return f'CAST({column} AS {cast}) {operator} {placeholder}'

    def attribute_column(self, attribute):
        name = attribute.lower()
        if name in self.attributes:
            return self.attributes[name]
        raise QueryError(f'Unknown attribute {attribute!r}')

    # --- driver -----------------------------------------------------------

    def compile(self):
        """Return ``(where_sql, params)``."""
        clauses = []
        while self.peek() is not None:
            clauses.append(self.term())
        clauses.extend(self.defaults())
        return ' AND '.join(clauses) or '1', self.params

    def term(self):
        """One term: ``key: value``, a bare word that the query language
        gives a meaning (:meth:`word_term`), or an attribute comparison."""
        token = self.peek()
        if token.kind == 'key':
            return self.key_term(self.next().text)
        if token.kind == 'word':
            clause = self.word_term(token.text)
            if clause is not None:
                return clause
        return self.expression()

    def key_term(self, key):
        """The clause of the term ``key: ...``."""
        raise NotImplementedError

    def word_term(self, text):
        """The clause of a term starting with the bare word ``text``, or
        ``None`` if the word means nothing by itself."""
        raise NotImplementedError

    def defaults(self):
        return []


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
        if _number(text) is not None and not self.at('op', offset=1):
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
            return self.range_term('events.created', _datetime_to_unix)
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
        lowered = self.text.lower()
        clauses = []
        if 'test' not in lowered:
            clauses.append("events.grp != 'Test'")
        if 'mdc' not in lowered:
            clauses.append("(events.search IS NULL OR events.search != 'MDC')")
        return clauses


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
        for code, name in CATEGORIES.items():
            if text.lower() == name.lower():
                return code
        return None

    def id_term(self):
        ids = [self.value_token()]
        while self.at('word') and (SUPEREVENT_ID_RE.match(self.peek().text)
                                   or GW_ID_RE.match(self.peek().text)):
            ids.append(self.next().text)
        return (f'(superevents.superevent_id IN ({self.bind(*ids)}) OR '
                f'superevents.gw_id IN ({self.bind(*ids)}))')

    def event_number(self, text):
        match = GRACEID_TERM_RE.match(text)
        if match is None:
            raise QueryError(f'Invalid graceid {text!r}')
        return int(match.group(2))

    def word_term(self, text):
        if _number(text) is not None and not self.at('op', offset=1):
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
            return self.range_term('superevents.created', _datetime_to_unix)
        if key in ('label', 'labels'):
            return self.expression()
        if key in self.attributes:
            if self.at('op'):
                return self.comparison(key)
            return self.range_term(self.attributes[key])
        raise QueryError(f'Unknown query keyword {key + ":"!r}')

    def defaults(self):
        return [] if self.has_category else ["superevents.category = 'P'"]


def compile_event_query(text):
    """``(where_sql, params)`` of an event query."""
    return EventQuery(text).compile()


def compile_superevent_query(text):
    """``(where_sql, params)`` of a superevent query."""
    return SupereventQuery(text).compile()
