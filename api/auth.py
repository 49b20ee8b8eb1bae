"""Who is asking and which provinces' rows they may see (DESIGN.md "Read API").

Scopes of the read API:

- ``moh``: everything, nationally;
- ``province:<P>``: province P's coverage, doses, turnaround, exposure sites and windows,
  alerts, clusters, results of samples collected in P, vaccination records of P's people;
- ``tracer:<P>``: alerts, exposure sites and windows, clusters, and the exposures and visits
  of people registered in P, and the live alert stream;
- ``person:<id>``: the citizen's own record (``/v1/me...``): that person's visits, results,
  doses and exposure notices, and nothing of anyone else.

Each route names the scope kinds it accepts (:data:`api.routes` declares them). A caller
holding none of them gets 403 before anything is read; a caller holding one gets a
:class:`Reach`: every province (``moh``) or the values of its accepted scopes. Rows of other
provinces are then never read or returned; a person token's reach is its person
(:attr:`Reach.person`). Write scopes of the ingest API (``app``, ``venue-admin``, ``venue``,
``site``, ``lab``, ``institution``) reach nothing here.

This module is pure (the token library and the clock are passed in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from api.problems import Problem
from covidtech.tokens import (
    Claims,
    ExpiredToken,
    ForgedToken,
    MalformedToken,
    RevokedToken,
    ScopeKind,
    TokenError,
    TokenSigner,
)
from domain import reference

__all__ = [
    "ALL_PROVINCES",
    "MOH",
    "MOH_PROVINCE",
    "MOH_PROVINCE_TRACER",
    "MOH_TRACER",
    "PERSON",
    "Reach",
    "authenticate",
    "reach_of",
]

#: Accepted scope kinds of the routes (see the module docstring).
MOH: frozenset[ScopeKind] = frozenset({ScopeKind.MOH})
MOH_PROVINCE: frozenset[ScopeKind] = frozenset({ScopeKind.MOH, ScopeKind.PROVINCE})
MOH_TRACER: frozenset[ScopeKind] = frozenset({ScopeKind.MOH, ScopeKind.TRACER})
MOH_PROVINCE_TRACER: frozenset[ScopeKind] = frozenset(
    {ScopeKind.MOH, ScopeKind.PROVINCE, ScopeKind.TRACER}
)
#: The citizen's own routes (``/v1/me...``): a token bound to one person.
PERSON: frozenset[ScopeKind] = frozenset({ScopeKind.PERSON})

#: The 63 province codes, sorted (a national list walks them in this order).
ALL_PROVINCES: tuple[str, ...] = tuple(sorted(reference.PROVINCES))


@dataclass(frozen=True, slots=True)
class Reach:
    """The provinces whose rows a caller may see on one route; on a citizen's route, the
    one person whose rows they may see."""

    everything: bool
    provinces: frozenset[str]
    person: str | None = None

    def allows(self, province: str | None) -> bool:
        """Whether a row of ``province`` may be shown (a row without province: MOH only)."""
        if self.everything:
            return True
        return province is not None and province in self.provinces

    def provinces_for(self, requested: str | None) -> tuple[str, ...]:
        """The provinces a list reads: the one requested (if allowed) or every reachable one.

        Raises a 403 problem when the requested province is out of reach.
        """
        if requested is not None:
            if not self.allows(requested):
                raise Problem(
                    "insufficient-scope", f"your token does not reach province {requested}"
                )
            return (requested,)
        if self.everything:
            return ALL_PROVINCES
        return tuple(sorted(self.provinces))


def reach_of(claims: Claims, kinds: Iterable[ScopeKind]) -> Reach:
    """What ``claims`` reach on a route accepting ``kinds``; 403 problem if nothing.

    Why: DESIGN "Read API": ``moh`` reads everything; ``province:<P>`` and ``tracer:<P>``
    read their province only, and only on the routes that accept their kind.
    """
    accepted = frozenset(kinds)
    if ScopeKind.MOH in accepted and claims.has(ScopeKind.MOH):
        return Reach(True, frozenset())
    if ScopeKind.PERSON in accepted and claims.person is not None:
        return Reach(False, frozenset(), person=claims.person)
    provinces: set[str] = set()
    for kind in accepted & {ScopeKind.PROVINCE, ScopeKind.TRACER}:
        provinces |= claims.values(kind)
    if not provinces:
        wanted = " or ".join(
            sorted(k.value if not k.takes_value else f"{k.value}:<code>" for k in accepted)
        )
        raise Problem("insufficient-scope", f"this route needs a {wanted} scope")
    return Reach(False, frozenset(provinces))


def authenticate(
    authorization: str | None,
    signer: TokenSigner,
    now: datetime,
    is_revoked: Callable[[str], bool],
) -> Claims:
    """The claims of the request's bearer token; a 401 problem for anything else.

    Why: DESIGN "Read API": tokens are signed, expiring grants that can be revoked; a revoked
    token is refused like an expired one. The problem ``type`` says which (missing, invalid,
    expired, revoked) without revealing more (a forged and a malformed token look alike).
    """
    if not authorization:
        raise Problem("token-missing", "send Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem("token-missing", "send Authorization: Bearer <token>")
    try:
        return signer.verify(token, now, is_revoked=is_revoked)
    except ExpiredToken as e:
        raise Problem("token-expired", "the token has expired; ask for a new grant") from e
    except RevokedToken as e:
        raise Problem("token-revoked", "the token's grant was revoked") from e
    except (ForgedToken, MalformedToken) as e:
        raise Problem("token-invalid", "the token is not valid") from e
    except TokenError as e:  # a future subclass: refuse it too
        raise Problem("token-invalid", "the token is not valid") from e
