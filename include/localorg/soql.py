"""A recursive-descent parser for the SOQL subset the local org serves.

Grammar (keywords case-insensitive)::

    query     := SELECT (COUNT '(' ')' | path (',' path)*) FROM name
                 [WHERE condition] [ORDER BY order (',' order)*] [LIMIT int] [OFFSET int]
    path      := name ['.' name]                      -- one level of parent relationship
    condition := unit (AND unit)* | unit (OR unit)*   -- mixing AND/OR needs parentheses, as in SOQL
    unit      := NOT unit | '(' condition ')' | path op literal | path [NOT] IN '(' literal, ... ')'
                 | path LIKE string
    literal   := string | number | date | datetime | NULL | TRUE | FALSE
    order     := path [ASC | DESC] [NULLS (FIRST | LAST)]

ORDER is a keyword and a standard object: it names the object after FROM and a relationship before a
``.`` (``Order.Status``, from OrderItem), as in Salesforce, and starts ORDER BY everywhere else.

Anything else is a MALFORMED_QUERY in Salesforce's ``ERROR at Row:R:Column:C`` format; nothing is
skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lexer import Token, query_error, tokenize

COMPARISON_OPS = ("=", "!=", "<>", "<", "<=", ">", ">=")
_RESERVED = {
    "SELECT",
    "FROM",
    "WHERE",
    "ORDER",
    "BY",
    "LIMIT",
    "OFFSET",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "NULL",
    "TRUE",
    "FALSE",
    "GROUP",
    "HAVING",
}


@dataclass(frozen=True)
class Path:
    """A field reference: ``Name`` or ``Account.Name``."""

    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Literal:
    """A literal value; ``kind`` is the token kind or ``null``/``boolean``."""

    kind: str
    token: Token


@dataclass(frozen=True)
class Comparison:
    path: Path
    op: str
    value: Literal


@dataclass(frozen=True)
class InList:
    path: Path
    negated: bool
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Like:
    path: Path
    pattern: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | InList | Like | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    path: Path
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Query:
    count: bool
    fields: tuple[Path, ...]
    sobject: str
    sobject_pos: int
    where: Condition | None
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


def parse(source: str) -> Query:
    """Parse a SOQL statement; raises SalesforceError (MALFORMED_QUERY) on anything outside the subset."""
    return _Parser(source).query()


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, token: Token | None = None) -> Exception:
        token = token or self.tok
        shown = "<EOF>" if token.kind == "eof" else token.text
        return query_error(self.source, token.pos, "MALFORMED_QUERY", f"unexpected token: {shown}")

    def take(self) -> Token:
        token = self.tok
        self.i += 1
        return token

    def keyword(self, *words: str) -> str | None:
        if self.tok.kind == "ident" and self.tok.upper in words:
            return self.take().upper
        return None

    def expect_keyword(self, word: str) -> None:
        if self.keyword(word) is None:
            raise self.fail()

    def op(self, *ops: str) -> str | None:
        if self.tok.kind == "op" and self.tok.text in ops:
            return self.take().text
        return None

    def expect_op(self, op: str) -> None:
        if self.op(op) is None:
            raise self.fail()

    def name(self, *allowed: str) -> Token:
        """An identifier that is not a keyword, except the keywords ``allowed`` here."""
        if self.tok.kind != "ident" or self.tok.upper in _RESERVED.difference(allowed):
            raise self.fail()
        return self.take()

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or not token.text.isdigit():
            raise self.fail(token)
        return int(token.text)

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        count = False
        fields: list[Path] = []
        if self.tok.kind == "ident" and self.tok.upper == "COUNT" and self.tokens[self.i + 1].text == "(":
            self.i += 2
            self.expect_op(")")
            count = True
        else:
            fields.append(self.path())
            while self.op(","):
                fields.append(self.path())
        self.expect_keyword("FROM")
        sobject = self.name("ORDER")
        where = self.condition() if self.keyword("WHERE") else None
        order: list[OrderItem] = []
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            order.append(self.order_item())
            while self.op(","):
                order.append(self.order_item())
        limit = self.integer() if self.keyword("LIMIT") else None
        offset = self.integer() if self.keyword("OFFSET") else None
        if self.tok.kind != "eof":
            raise self.fail()
        return Query(count, tuple(fields), sobject.text, sobject.pos, where, tuple(order), limit, offset)

    def path(self) -> Path:
        relationship = self.tok.upper == "ORDER" and self.tokens[self.i + 1].text == "."
        first = self.name("ORDER") if relationship else self.name()
        parts = [first.text]
        if self.op("."):
            parts.append(self.name().text)
            if self.tok.kind == "op" and self.tok.text == ".":
                # Only one level of parent relationship is served locally.
                raise self.fail()
        return Path(tuple(parts), first.pos)

    def order_item(self) -> OrderItem:
        path = self.path()
        descending = self.keyword("ASC", "DESC") == "DESC"
        nulls_first = not descending  # Salesforce: ASC NULLS FIRST, DESC NULLS LAST by default
        if self.keyword("NULLS"):
            word = self.keyword("FIRST", "LAST")
            if word is None:
                raise self.fail()
            nulls_first = word == "FIRST"
        return OrderItem(path, descending, nulls_first)

    def condition(self) -> Condition:
        items = [self.unit()]
        joiner = self.keyword("AND", "OR")
        if joiner is None:
            return items[0]
        items.append(self.unit())
        while self.tok.kind == "ident" and self.tok.upper in ("AND", "OR"):
            if self.tok.upper != joiner:
                raise self.fail()  # SOQL needs parentheses to mix AND and OR
            self.take()
            items.append(self.unit())
        return BoolOp(joiner, tuple(items))

    def unit(self) -> Condition:
        if self.keyword("NOT"):
            return Not(self.unit())
        if self.op("("):
            inner = self.condition()
            self.expect_op(")")
            return inner
        path = self.path()
        if op := self.op(*COMPARISON_OPS):
            return Comparison(path, "!=" if op == "<>" else op, self.literal())
        if self.keyword("LIKE"):
            pattern = self.literal()
            if pattern.kind != "string":
                raise self.fail(pattern.token)
            return Like(path, pattern)
        negated = self.keyword("NOT") is not None
        if self.keyword("IN") is None:
            raise self.fail()
        self.expect_op("(")
        values = [self.literal()]
        while self.op(","):
            values.append(self.literal())
        self.expect_op(")")
        return InList(path, negated, tuple(values))

    def literal(self) -> Literal:
        token = self.take()
        if token.kind in ("string", "number", "date", "datetime"):
            return Literal(token.kind, token)
        if token.kind == "op" and token.text == "-" and self.tok.kind == "number":
            number = self.take()
            return Literal("number", Token("number", "-" + number.text, token.pos))
        if token.kind == "ident" and token.upper == "NULL":
            return Literal("null", token)
        if token.kind == "ident" and token.upper in ("TRUE", "FALSE"):
            return Literal("boolean", token)
        raise self.fail(token)
