"""The revocation list folds the `grants` topic: revocations count, anything else does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from covidtech.revocations import GRANT_ISSUED, GRANT_REVOKED, RevocationList
from covidtech.settings import Settings
from covidtech.tokens import TokenSigner
from schemas.codec import encode

NOW = datetime(2021, 8, 1, 3, 0, tzinfo=UTC)


def issued(grant: str, parent: str | None = None, by_token: str | None = None) -> bytes:
    return encode(
        GRANT_ISSUED,
        {
            "event_id": f"{grant}:issued",
            "grant_id": grant,
            "token_id": f"jti-{grant}",
            "agency": "HCDC",
            "scopes": ["tracer:79"],
            "purpose": "tracing",
            "granted_by": "moh",
            "granted_by_grant_id": parent,
            "granted_by_token_id": by_token,
            "granted_at": NOW,
            "expires_at": NOW + timedelta(days=30),
        },
    )


def revoked(grant: str) -> bytes:
    return encode(
        GRANT_REVOKED,
        {
            "event_id": f"{grant}:revoked",
            "grant_id": grant,
            "token_id": f"jti-{grant}",
            "revoked_by": "moh",
            "revoked_at": NOW,
            "reason": None,
        },
    )


def test_revocations_of_the_topic_and_of_this_process_are_refused() -> None:
    revocations = RevocationList(Settings())
    for value in (
        issued("g1"),
        issued("g2"),
        revoked("g1"),
        None,
        b"garbage",
        b"\xc3\x01" + b"\0" * 8,
    ):
        revocations.apply(value)
    assert revocations.is_revoked("g1") and revocations.is_revoked("jti-g1")
    assert not revocations.is_revoked("g2") and not revocations.is_revoked("jti-g2")
    assert revocations.events_read == 3
    revocations.revoke(["g2", ""])
    assert revocations.is_revoked("g2") and not revocations.is_revoked("")
    assert len(revocations) == 3


def test_it_plugs_into_token_verification() -> None:
    signer = TokenSigner("unit-test-secret-0123456789")
    token = signer.issue("HCDC", ["tracer:79"], timedelta(hours=1), now=NOW, grant_id="g1")
    revocations = RevocationList(Settings())
    claims = signer.verify(token, NOW, is_revoked=revocations.is_revoked)
    assert not revocations.claims_revoked(claims)
    revocations.apply(revoked("g1"))
    assert revocations.claims_revoked(claims)
    try:
        signer.verify(token, NOW, is_revoked=revocations.is_revoked)
    except Exception as e:  # RevokedToken
        assert type(e).__name__ == "RevokedToken"
    else:
        raise AssertionError("a revoked grant's token was accepted")


def test_revoking_a_grant_revokes_every_grant_issued_under_it() -> None:
    revocations = RevocationList(Settings())
    for value in (
        issued("root", by_token="boot-jti"),
        issued("child", parent="root", by_token="jti-root"),
        issued("grandchild", parent="child", by_token="jti-child"),
        issued("sibling", by_token="other-boot"),
    ):
        revocations.apply(value)
    assert not any(revocations.is_revoked(g) for g in ("root", "child", "grandchild"))
    revocations.apply(revoked("child"))
    assert revocations.is_revoked("child") and revocations.is_revoked("grandchild")
    assert not revocations.is_revoked("root") and not revocations.is_revoked("sibling")
    # Revoking the bootstrap token (``covidtech token revoke``) revokes what it issued.
    revocations.revoke(["boot-jti"])
    assert revocations.is_revoked("root")
    assert not revocations.is_revoked("sibling")


def test_a_chain_of_grants_deeper_than_any_issued_is_refused() -> None:
    from covidtech.revocations import MAX_GRANT_DEPTH

    revocations = RevocationList(Settings())
    for depth in range(MAX_GRANT_DEPTH + 1):
        revocations.issued(f"g{depth + 1}", f"g{depth}")
    assert not revocations.is_revoked(f"g{MAX_GRANT_DEPTH - 1}")
    assert revocations.is_revoked(f"g{MAX_GRANT_DEPTH + 1}")
