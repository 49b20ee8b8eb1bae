"""Keys by id, as the token and the certificate key sets hold them.

A setting lists them as ``<key id>:<value>`` items separated by commas; the first signs and
every one verifies, so a key is rotated with an overlap. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["KEY_ID", "check_key_id", "keys_by_id", "parse_key_list"]

#: What a key id may be.
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")

_V = TypeVar("_V")
_K = TypeVar("_K")


def check_key_id(kid: str) -> None:
    """Raise ``ValueError`` unless ``kid`` is a key id."""
    if not KEY_ID.fullmatch(kid):
        raise ValueError(f"key id {kid!r} must be 1-32 letters, digits, '.', '_' or '-'")


def keys_by_id(entries: Iterable[tuple[str, _V]], load: Callable[[str, _V], _K]) -> dict[str, _K]:
    """Each entry's key, ``load(kid, value)``, by id, in the entries' order. Raises
    ``ValueError`` for a bad id, a value ``load`` refuses, an id given twice or no entry."""
    keys: dict[str, _K] = {}
    for kid, value in entries:
        check_key_id(kid)
        key = load(kid, value)
        if kid in keys:
            raise ValueError(f"key id {kid!r} appears twice")
        keys[kid] = key
    if not keys:
        raise ValueError("a key set needs at least one key")
    return keys


def parse_key_list(text: str, value: str) -> list[tuple[str, str]]:
    """The (key id, value) items of ``"<key id>:<value>,..."``; ``value`` names what stands
    after the colon. Raises ``ValueError`` naming an item without a colon by its position,
    never by its text (it may be a secret without its id)."""
    items = []
    for n, item in enumerate(text.split(","), 1):
        kid, sep, rest = item.strip().partition(":")
        if not sep:
            raise ValueError(f"key {n} must look like <key id>:{value}")
        items.append((kid, rest))
    return items
