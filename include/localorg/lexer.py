"""Tokenizer shared by the SOQL parser and the formula language of the org definition."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SalesforceError

_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})"
_TOKEN_RE = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<datetime>{_DATETIME})(?![\w.:])
  | (?P<date>\d{{4}}-\d{{2}}-\d{{2}})(?![\w.:-])
  | (?P<number>\d+(?:\.\d+)?|\.\d+)(?![\w.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<dstring>"(?:[^"\\]|\\.)*")
  | (?P<op>!=|<>|<=|>=|==|&&|\|\||[=<>(),.+\-*/&:])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    """A token with its kind (ws-free), raw text and 0-based offset in the source."""

    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        """Keywords are case-insensitive."""
        return self.text.upper()


def location(source: str, pos: int) -> tuple[int, int, str]:
    """Row, column (both 1-based) and the source line of an offset."""
    row = source.count("\n", 0, pos) + 1
    line_start = source.rfind("\n", 0, pos) + 1
    line_end = source.find("\n", pos)
    line = source[line_start : line_end if line_end >= 0 else len(source)]
    return row, pos - line_start + 1, line


def query_error(source: str, pos: int, code: str, message: str) -> SalesforceError:
    """A 400 in Salesforce's ``ERROR at Row:1:Column:N`` format, with the line and a caret."""
    row, col, line = location(source, pos)
    text = f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}"
    return SalesforceError(400, code, text)


def tokenize(source: str, double_quotes: bool = False) -> list[Token]:
    """Split ``source`` into tokens, ending with an ``eof`` token; unknown characters are errors.

    Formulas take "double-quoted" strings as well; SOQL does not (Salesforce: MALFORMED_QUERY).
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        if match is None or match.lastgroup == "dstring" and not double_quotes:
            raise query_error(source, pos, "MALFORMED_QUERY", f"unexpected token: '{source[pos]}'")
        kind = "string" if match.lastgroup == "dstring" else match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "", len(source)))
    return tokens


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def unquote(source: str, token: Token, like: bool = False) -> str:
    """The value of a string token with SOQL backslash escapes decoded.

    In LIKE patterns ``\\%``, ``\\_`` and ``\\\\`` stay escaped for SQLite's ``ESCAPE '\\'``; elsewhere
    an escape Salesforce does not know is a MALFORMED_QUERY, as in Salesforce.
    """
    body = token.text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if like and nxt in "%_\\":
            out.append("\\" + nxt)
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
        else:
            raise query_error(
                source,
                token.pos,
                "MALFORMED_QUERY",
                f"Invalid string literal '{body}'. Illegal character sequence '\\{nxt}' in string literal.",
            )
        i += 2
    return "".join(out)
