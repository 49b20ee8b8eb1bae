"""JSON request bodies as both APIs read them: strict JSON, Unicode text only.

``json.loads`` accepts things no client should send and the rest of the system cannot hold:
``NaN`` and ``Infinity``; arrays nested thousands deep (a ``RecursionError``); and escaped
lone surrogates (``"\\ud800"``), which decode to a ``str`` that UTF-8 cannot encode, so the
write that follows failed with a 500. Each is refused here as malformed JSON (a 400 with
the reason), before anything is validated or written.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["BodyError", "parse_json"]

# A surrogate can only reach a parsed string through a \uD800-\uDFFF escape: UTF-8 bytes
# cannot encode one, and the decoder refuses them. Only bodies holding such an escape (an
# emoji's surrogate pair is legitimate) are walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class BodyError(ValueError):
    """A body that is not acceptable JSON; the message says why."""


def parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise BodyError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise BodyError("invalid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BodyError(f"invalid JSON: {e}") from None
    if _SURROGATE_ESCAPE.search(raw) and not _unicode(value):
        raise BodyError("invalid JSON: a string holds a lone surrogate escape (not Unicode text)")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unicode(value: Any) -> bool:
    """Whether every string in ``value`` (keys included) encodes as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
