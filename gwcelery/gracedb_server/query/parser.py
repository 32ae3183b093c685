"""The tokens of the query language and the parser that both compilers
share: token stream, term shapes (ranges, names, booleans) and label and
attribute expressions."""

import datetime
import re

from ..identifiers import gps_to_utc
from ..vocabulary import LABELS

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
    """A token of a query: its ``kind`` (a group name of
    :data:`TOKEN_RE`) and its text."""

    __slots__ = ('kind', 'text')

    def __init__(self, kind, text):
        self.kind = kind
        self.text = text

    def __repr__(self):
        return f'{self.kind}:{self.text}'


def tokenize(text):
    """The tokens of a query text; :class:`QueryError` where none matches."""
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


def number_or_none(text):
    """The number that ``text`` spells, or ``None``."""
    try:
        return float(text)
    except ValueError:
        return None


def datetime_to_unix(text):
    """Unix time of an ISO date/time (UTC) or of a GPS time."""
    number = number_or_none(text)
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
        """The token ``offset`` ahead, or ``None`` past the end."""
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self):
        """Consume and return the next token."""
        token = self.peek()
        if token is None:
            raise QueryError('Unexpected end of query')
        self.position += 1
        return token

    def at(self, kind, text=None, offset=0):
        """Whether the token ``offset`` ahead is of ``kind`` (and ``text``)."""
        token = self.peek(offset)
        return (token is not None and token.kind == kind
                and (text is None or token.text == text))

    def value_token(self):
        """Consume a value (a word or a quoted string); return its text."""
        token = self.next()
        if token.kind not in ('word', 'string'):
            raise QueryError(f'Expected a value, not {token.text!r}')
        return token.text

    def bind(self, *values):
        """Add SQL parameters; return their placeholders."""
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
        """The name of ``vocabulary`` that ``text`` spells in any case, or
        ``None``."""
        for name in vocabulary:
            if name.lower() == text.lower():
                return name
        return None

    def boolean_term(self, column):
        """A ``true``/``false`` value compared with ``column``."""
        value = self.value_token().lower()
        if value not in ('true', 'false', '1', '0', 'yes', 'no'):
            raise QueryError(f'Expected true or false, not {value!r}')
        truth = value in ('true', '1', 'yes')
        return f'({column}) = {int(truth)}'

    def string_term(self, column):
        """A value compared with ``column`` as text."""
        return f'{column} = {self.bind(self.value_token())}'

    # --- label and attribute expressions ----------------------------------

    def expression(self):
        """Terms ORed with ``|``."""
        terms = [self.and_expression()]
        while self.at('punct', '|'):
            self.next()
            terms.append(self.and_expression())
        return terms[0] if len(terms) == 1 else \
            '(' + ' OR '.join(terms) + ')'

    def and_expression(self):
        """Terms ANDed with ``&`` or ``,``."""
        terms = [self.unary()]
        while self.at('punct', '&') or self.at('punct', ','):
            self.next()
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else \
            '(' + ' AND '.join(terms) + ')'

    def unary(self):
        """A negation, a parenthesised expression, a comparison or a label."""
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
        """``attribute <op> value``, compared as a number where the value is
        one."""
        operator = SQL_OPERATORS[self.next().text]
        token = self.next()
        if token.kind not in ('word', 'string'):
            raise QueryError(f'Expected a value after {attribute}')
        if token.kind == 'string' or number_or_none(token.text) is None:
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
        """The SQL column of an attribute that comparisons may name."""
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
        """Clauses added to every query (``[]``: none)."""
        return []
