"""Page tokens: opaque, signed, bound to their route and query."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.paging import InvalidPageToken, PageTokens

SECRET = "unit-test-secret-0123456789"
BINDING = {"provinces": ["79"], "risk": None, "since": None}
POSITION = {"seg": "2021-08-01", "at": 1627786800000, "id": "alert-7"}


def test_a_token_opens_to_its_position_on_its_route_with_its_binding() -> None:
    pages = PageTokens(SECRET)
    token = pages.mint("listAlerts", BINDING, POSITION)
    assert pages.open(token, "listAlerts", dict(reversed(list(BINDING.items())))) == POSITION


@pytest.mark.parametrize(
    ("route", "binding"),
    [
        ("listAlerts", {**BINDING, "provinces": ["01"]}),
        ("listAlerts", {**BINDING, "risk": "HIGH"}),
        ("listAlerts", {"provinces": ["79"]}),
        ("listExposureSites", BINDING),
    ],
)
def test_a_token_is_refused_for_another_query_or_list(
    route: str, binding: dict[str, object]
) -> None:
    pages = PageTokens(SECRET)
    token = pages.mint("listAlerts", BINDING, POSITION)
    with pytest.raises(InvalidPageToken):
        pages.open(token, route, binding)


def test_an_edited_token_is_refused_even_with_a_matching_binding() -> None:
    pages = PageTokens(SECRET)
    token = pages.mint("listAlerts", BINDING, POSITION)
    body, mac = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["b"]["provinces"] = ["01"]
    edited = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidPageToken, match="not authentic"):
        pages.open(f"{edited}.{mac}", "listAlerts", {**BINDING, "provinces": ["01"]})


def test_a_token_of_another_secret_is_refused() -> None:
    token = PageTokens("another-secret-0123456789").mint("listAlerts", BINDING, POSITION)
    with pytest.raises(InvalidPageToken):
        PageTokens(SECRET).open(token, "listAlerts", BINDING)


@given(st.text(max_size=300))
def test_garbage_never_opens_and_never_raises_anything_else(garbage: str) -> None:
    with pytest.raises(InvalidPageToken):
        PageTokens(SECRET).open(garbage, "listAlerts", BINDING)


@given(st.integers(min_value=0, max_value=2**62), st.text(max_size=40))
def test_any_position_round_trips(at: int, ident: str) -> None:
    pages = PageTokens(SECRET)
    position = {"at": at, "id": ident}
    assert pages.open(pages.mint("r", {}, position), "r", {}) == position
