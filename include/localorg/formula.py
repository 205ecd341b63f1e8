"""The formula language of the org definition, compiled to SQLite expressions.

Formula fields (``Contact.Full_Name__c``, ``Opportunity.ExpectedRevenue``) compile to expressions over
the object's columns, so they are computed on read and can be filtered and sorted like any column.
Validation rules compile the same way with the record's values bound as parameters, so one
evaluator serves both. Supported: field names, numbers, "text" or 'text', TRUE/FALSE/NULL,
``+ - * /``, ``&`` (text concatenation), ``= == != <> < <= > >=``, ``&& ||`` and the functions
AND, OR, NOT, IF, ISBLANK, BLANKVALUE, ISPICKVAL, TRIM, LEN, DATEVALUE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import SalesforceError
from .lexer import Token, tokenize

# Value kinds a formula works with; field types map onto them (see schema.FORMULA_KIND).
TEXT, NUMBER, BOOLEAN, DATE, DATETIME = "text", "number", "boolean", "date", "datetime"

Resolver = Callable[[str], tuple[str, str]]


@dataclass(frozen=True)
class Compiled:
    """A compiled formula: SQL expression, its kind, and the field names it reads."""

    sql: str
    kind: str
    fields: tuple[str, ...]


class FormulaError(SalesforceError):
    """An invalid formula in the org definition (reported at startup, never at request time)."""

    def __init__(self, formula: str, message: str) -> None:
        super().__init__(500, "INVALID_FORMULA", f"{message} in formula: {formula}")


def compile_formula(text: str, resolve: Resolver) -> Compiled:
    """Compile ``text``; ``resolve(name)`` returns the SQL for a field and its kind."""
    parser = _Parser(text, resolve)
    sql, kind = parser.expression()
    parser.expect_eof()
    if kind == TEXT:
        # A formula that yields "" is null in Salesforce.
        sql = f"NULLIF({sql}, '')"
    return Compiled(sql, kind, tuple(dict.fromkeys(parser.fields)))


class _Parser:
    """Precedence climbing: || < && < comparison < + - & < * / < unary < primary."""

    def __init__(self, text: str, resolve: Resolver) -> None:
        self.text = text
        self.tokens = tokenize(text, double_quotes=True)
        self.i = 0
        self.resolve = resolve
        self.fields: list[str] = []

    def error(self, message: str) -> FormulaError:
        return FormulaError(self.text, message)

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, *ops: str) -> str | None:
        if self.tok.kind == "op" and self.tok.text in ops:
            return self.take().text
        return None

    def expect(self, op: str) -> None:
        if self.accept(op) is None:
            raise self.error(f"expected '{op}' at '{self.tok.text}'")

    def expect_eof(self) -> None:
        if self.tok.kind != "eof":
            raise self.error(f"unexpected '{self.tok.text}'")

    def expression(self) -> tuple[str, str]:
        left = self.conjunction()
        while self.accept("||"):
            left = (f"({_bool(left, self)} OR {_bool(self.conjunction(), self)})", BOOLEAN)
        return left

    def conjunction(self) -> tuple[str, str]:
        left = self.comparison()
        while self.accept("&&"):
            left = (f"({_bool(left, self)} AND {_bool(self.comparison(), self)})", BOOLEAN)
        return left

    def comparison(self) -> tuple[str, str]:
        left = self.additive()
        op = self.accept("=", "==", "!=", "<>", "<", "<=", ">", ">=")
        if op is None:
            return left
        right = self.additive()
        if left[1] != right[1] and "NULL" not in (left[0], right[0]):
            raise self.error(f"cannot compare {left[1]} with {right[1]}")
        sql_op = {"==": "=", "<>": "!=", "=": "="}.get(op, op)
        return f"({left[0]} {sql_op} {right[0]})", BOOLEAN

    def additive(self) -> tuple[str, str]:
        left = self.multiplicative()
        while op := self.accept("+", "-", "&"):
            right = self.multiplicative()
            if op == "&":
                left = (f"(COALESCE({_text(left, self)}, '') || COALESCE({_text(right, self)}, ''))", TEXT)
            else:
                left = (f"({_num(left, self)} {op} {_num(right, self)})", NUMBER)
        return left

    def multiplicative(self) -> tuple[str, str]:
        left = self.unary()
        while op := self.accept("*", "/"):
            right = self.unary()
            # 1.0 * keeps integer columns from SQLite integer division.
            lhs = f"(1.0 * {_num(left, self)})" if op == "/" else _num(left, self)
            left = (f"({lhs} {op} {_num(right, self)})", NUMBER)
        return left

    def unary(self) -> tuple[str, str]:
        if self.accept("-"):
            return f"(-{_num(self.unary(), self)})", NUMBER
        return self.primary()

    def primary(self) -> tuple[str, str]:
        tok = self.take()
        if tok.kind == "number":
            return tok.text, NUMBER
        if tok.kind == "string":
            return _sql_string(tok.text[1:-1]), TEXT
        if tok.kind == "op" and tok.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if tok.kind != "ident":
            raise self.error(f"unexpected '{tok.text}'")
        word = tok.upper
        if word in ("TRUE", "FALSE"):
            return ("1" if word == "TRUE" else "0"), BOOLEAN
        if word == "NULL":
            return "NULL", NUMBER
        if self.accept("("):
            return self.call(word)
        self.fields.append(tok.text)
        return self.resolve(tok.text)

    def arguments(self) -> list[tuple[str, str]]:
        args = [self.expression()]
        while self.accept(","):
            args.append(self.expression())
        self.expect(")")
        return args

    def call(self, name: str) -> tuple[str, str]:
        args = self.arguments()

        def arity(n: int) -> None:
            if len(args) != n:
                raise self.error(f"{name} takes {n} arguments")

        if name in ("AND", "OR"):
            return "(" + f" {name} ".join(_bool(a, self) for a in args) + ")", BOOLEAN
        if name == "NOT":
            arity(1)
            return f"(NOT {_bool(args[0], self)})", BOOLEAN
        if name == "ISBLANK":
            arity(1)
            return f"({args[0][0]} IS NULL OR {args[0][0]} = '')", BOOLEAN
        if name == "BLANKVALUE":
            arity(2)
            return f"COALESCE(NULLIF({args[0][0]}, ''), {args[1][0]})", args[0][1]
        if name == "IF":
            arity(3)
            kind = args[1][1] if args[1][0] != "NULL" else args[2][1]
            return f"(CASE WHEN {_bool(args[0], self)} THEN {args[1][0]} ELSE {args[2][0]} END)", kind
        if name == "ISPICKVAL":
            arity(2)
            return f"COALESCE({args[0][0]} = {_text(args[1], self)}, 0)", BOOLEAN
        if name == "TRIM":
            arity(1)
            return f"TRIM({_text(args[0], self)})", TEXT
        if name == "LEN":
            arity(1)
            return f"COALESCE(LENGTH({_text(args[0], self)}), 0)", NUMBER
        if name == "DATEVALUE":
            arity(1)
            if args[0][1] != DATETIME:
                raise self.error("DATEVALUE needs a datetime")
            return f"date({args[0][0]} / 1000, 'unixepoch')", DATE
        raise self.error(f"unknown function {name}")


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\'", "'").replace('\\"', '"').replace("'", "''") + "'"


def _expect(arg: tuple[str, str], kinds: tuple[str, ...], parser: _Parser) -> str:
    if arg[1] not in kinds and arg[0] != "NULL":
        raise parser.error(f"expected {' or '.join(kinds)}, got {arg[1]}")
    return arg[0]


def _bool(arg: tuple[str, str], parser: _Parser) -> str:
    return _expect(arg, (BOOLEAN,), parser)


def _num(arg: tuple[str, str], parser: _Parser) -> str:
    return _expect(arg, (NUMBER,), parser)


def _text(arg: tuple[str, str], parser: _Parser) -> str:
    return _expect(arg, (TEXT,), parser)
