"""The production profile and the token keys: what a process refuses to start with."""

from __future__ import annotations

import pytest

from covidtech.settings import DEV_SECRET, DEV_TOKEN_KEYS, SettingsError, load

OWN_QR = "q" * 40
OWN_KEYS = "2026-12:" + "t" * 40 + ",2026-06:" + "u" * 40


def production(**env: str) -> dict[str, str]:
    return {"COVIDTECH_PROFILE": "production", **{f"COVIDTECH_{k}": v for k, v in env.items()}}


def test_development_is_the_default_and_runs_on_the_public_keys() -> None:
    s = load({})
    assert (s.profile, s.secret, s.token_keys) == ("development", DEV_SECRET, DEV_TOKEN_KEYS)
    assert s.describe()["token_keys"] == "dev (dev default)"


def test_production_starts_with_keys_of_its_own_and_never_shows_them() -> None:
    s = load(production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS))
    assert s.production
    assert s.token_keyset().ids == ("2026-12", "2026-06")
    shown = s.describe()
    assert shown["token_keys"] == "2026-12,2026-06 (***)" and shown["secret"] == "***"
    assert "t" * 40 not in str(shown)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (production(), "development keys"),
        (production(SECRET=OWN_QR), "development keys"),
        (production(TOKEN_KEYS=OWN_KEYS), "development keys"),
        (production(SECRET=OWN_QR, TOKEN_KEYS=f"{OWN_KEYS},old:{DEV_TOKEN_KEYS[4:]}"), "dev"),
        (production(SECRET="q" * 20, TOKEN_KEYS=OWN_KEYS), "SECRET is shorter"),
        (production(SECRET=OWN_QR, TOKEN_KEYS="k:" + "t" * 20), "key 'k'"),
        (production(SECRET=OWN_QR, TOKEN_KEYS="k:" + OWN_QR), "must not reuse"),
        ({"COVIDTECH_PROFILE": "staging"}, "development, production"),
        ({"COVIDTECH_TOKEN_KEYS": "no-secret-here"}, "TOKEN_KEYS"),
        ({"COVIDTECH_TOKEN_KEYS": "a:x,a:y"}, "twice"),
    ],
)
def test_a_process_refuses_to_start_with(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env)
