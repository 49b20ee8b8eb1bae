"""The citizen's route: a test result read with the code of the receipt (no token).

Rate limited twice: per client address and per lookup code (:class:`api.ratelimit.TokenBuckets`
on :class:`api.services.Services`), so guessing codes stays slow from one address or many.
"""

from __future__ import annotations

from starlette.responses import Response

from api.edge import Area, Ctx, Operation
from api.params import text_param
from api.problems import Problem
from api.render import iso_or_none, json_response
from domain.results import InvalidLookupCode, lookup_code_hash
from projections import queries

__all__ = ["get_result", "operations"]


async def get_result(ctx: Ctx) -> Response:
    services = ctx.services
    ctx.take(services.limiter, "lookups from your address")
    not_found = Problem("not-found", "no result for this lookup code")
    try:
        code_hash = lookup_code_hash(ctx.params["lookup_code"])
    except InvalidLookupCode:
        raise not_found from None
    # One code's attempts are limited too, whatever the address: guessing one code from many
    # addresses (a botnet, or a proxy whose clients cannot be told apart) stays slow.
    ctx.take(services.code_limiter, "lookups of this code", code_hash)
    row = await queries.result_by_lookup(services.store, code_hash)
    if row is None:
        raise not_found
    return json_response(
        {
            "state": row["state"],
            "test_type": row["test_type"],
            "collected_at": iso_or_none(row["collected_at"]),
            "resulted_at": iso_or_none(row["resulted_at"]),
        },
        cache_control="no-store",
    )


def operations() -> tuple[Operation, ...]:
    """The citizen's operation."""
    return (
        Area("citizens", None).get(
            "/v1/results/{lookup_code}",
            "getResult",
            "A citizen reads their test result",
            get_result,
            params=(
                text_param(
                    "lookup_code",
                    64,
                    "The code on the receipt or SMS (dashes optional).",
                    where="path",
                    required=True,
                ),
            ),
            response="Result",
            caching="none",
            errors=(404, 429, 503),
            description="No token. Looked up by the code's SHA-256; an unknown or malformed "
            "code is a 404 like any other. Rate limited per client address (429 + Retry-After). "
            "Only the state, test type and times are returned.",
        ),
    )
