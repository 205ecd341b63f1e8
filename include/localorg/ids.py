"""Salesforce record Ids: 15-character case-sensitive Ids and their 18-character case-safe form."""

from __future__ import annotations

import re

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# Characters 4-6 of a real Id are the pod and a reserved digit; the local org uses a fixed "8c0".
_POD = "8c0"
_ID_RE = re.compile(r"^[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?$")


def checksum(id15: str) -> str:
    """The 3-character suffix: one bit per uppercase letter in each 5-character chunk."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def make_id(prefix: str, sequence: int) -> str:
    """The 18-character Id of the ``sequence``-th record of an object with key prefix ``prefix``.

    The counter is fixed-width base62 in Salesforce's alphabet order (0-9, A-Z, a-z), so Ids of one
    object sort (binary collation) in creation order, the same order as the SQLite rowid.
    """
    digits = ""
    for _ in range(9):
        sequence, rem = divmod(sequence, 62)
        digits = BASE62[rem] + digits
    if sequence:
        raise OverflowError("record counter exhausted")
    id15 = prefix + _POD + digits
    return id15 + checksum(id15)


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Id, or None when ``value`` is not an Id.

    An 18-character Id whose suffix does not match its first 15 characters (case-insensitively, as
    Salesforce accepts case-mangled 18-character Ids) is not an Id.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    id15 = value[:15]
    suffix = checksum(id15)
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return id15 + suffix
