"""What the domain's lookups raise when they do not know a key."""

from __future__ import annotations

__all__ = ["UnknownKey"]


class UnknownKey(KeyError):
    """A key a lookup does not know. Its text is the message it was raised with, unquoted
    (a bare ``KeyError`` shows its argument's repr), or ``unnamed`` without one."""

    unnamed = "unknown key"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.unnamed
