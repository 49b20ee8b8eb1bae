"""The production profile, the token keys and the service accounts: what a process refuses
to start with."""

from __future__ import annotations

import pytest

from covidtech.settings import DEV_CERT_KEYS, DEV_SECRET, DEV_TOKEN_KEYS, SettingsError, load

OWN_QR = "q" * 40
OWN_KEYS = "2026-12:" + "t" * 40 + ",2026-06:" + "u" * 40
#: Two certificate keys: base64 of 32-byte seeds.
OWN_CERT = "2026-12:" + "c" * 43 + "=,2025-12:" + "d" * 43 + "="
ACCOUNTS = {
    "KAFKA_USERNAME": "covidtech-svc",
    "KAFKA_PASSWORD": "k-pass.word+/=@#%^*!?:~",
    "CASSANDRA_USERNAME": "covidtech_svc",
    "CASSANDRA_PASSWORD": "c-pass-word",
}


def production(**env: str) -> dict[str, str]:
    """A production environment with the service accounts (``KAFKA_USERNAME=""`` drops one)."""
    merged = {**ACCOUNTS, "CERT_KEYS": OWN_CERT, **env}
    return {
        "COVIDTECH_PROFILE": "production",
        **{f"COVIDTECH_{k}": v for k, v in merged.items()},
    }


def test_development_is_the_default_and_runs_on_the_public_keys() -> None:
    s = load({})
    assert (s.profile, s.secret, s.token_keys) == ("development", DEV_SECRET, DEV_TOKEN_KEYS)
    assert s.describe()["token_keys"] == "dev (dev default)"
    assert s.cert_keys == DEV_CERT_KEYS and s.describe()["cert_keys"] == "dev (dev default)"


def test_production_starts_with_keys_of_its_own_and_never_shows_them() -> None:
    s = load(production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS))
    assert s.production
    assert s.token_keyset().ids == ("2026-12", "2026-06")
    shown = s.describe()
    assert shown["token_keys"] == "2026-12,2026-06 (***)" and shown["secret"] == "***"
    assert "t" * 40 not in str(shown)
    assert s.certificate_keys().ids == ("2026-12", "2025-12")
    assert shown["cert_keys"] == "2026-12,2025-12 (***)" and "c" * 43 not in str(shown)
    assert load(s.as_env()) == s


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
        (production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS, CERT_KEYS=DEV_CERT_KEYS), "certificate"),
        # the development seed however it is spelt (URL-safe, unpadded), beside a key of its own
        (
            production(
                SECRET=OWN_QR,
                TOKEN_KEYS=OWN_KEYS,
                CERT_KEYS=f"{OWN_CERT},old:"
                + DEV_CERT_KEYS[4:].replace("+", "-").replace("/", "_").rstrip("="),
            ),
            "development certificate key",
        ),
        ({"COVIDTECH_PROFILE": "staging"}, "development, production"),
        ({"COVIDTECH_CERT_KEYS": "no-seed-here"}, "CERT_KEYS: key 1 must look like"),
        ({"COVIDTECH_CERT_KEYS": "k:c2hvcnQ="}, "32 bytes"),
        ({"COVIDTECH_CERT_KEYS": "k:not base64!"}, "not base64"),
        ({"COVIDTECH_CERT_VALIDITY": "10m"}, "CERT_VALIDITY"),
        ({"COVIDTECH_TOKEN_KEYS": "no-secret-here"}, "TOKEN_KEYS"),
        ({"COVIDTECH_TOKEN_KEYS": "a:x,a:y"}, "twice"),
        # service accounts: production needs both; a name and a password go together
        (
            production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS, KAFKA_USERNAME="", KAFKA_PASSWORD=""),
            "needs the Kafka account: set COVIDTECH_KAFKA_USERNAME and COVIDTECH_KAFKA_PASSWORD",
        ),
        (
            production(
                SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS, CASSANDRA_USERNAME="", CASSANDRA_PASSWORD=""
            ),
            "needs the Cassandra account",
        ),
        (
            production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS, KAFKA_PASSWORD=""),
            "KAFKA_USERNAME and COVIDTECH_KAFKA_PASSWORD are set together",
        ),
        ({"COVIDTECH_CASSANDRA_PASSWORD": "p"}, "CASSANDRA_USERNAME and"),
        ({"COVIDTECH_KAFKA_USERNAME": "a b", "COVIDTECH_KAFKA_PASSWORD": "p"}, "1-64 of"),
        ({"COVIDTECH_KAFKA_USERNAME": "a", "COVIDTECH_KAFKA_PASSWORD": 'p"q'}, "no quotes"),
        ({"COVIDTECH_CASSANDRA_USERNAME": "a", "COVIDTECH_CASSANDRA_PASSWORD": "p,q"}, "commas"),
        (
            {"COVIDTECH_CASSANDRA_USERNAME": "cassandra", "COVIDTECH_CASSANDRA_PASSWORD": "p"},
            "must not be 'cassandra'",
        ),
    ],
)
def test_a_process_refuses_to_start_with(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env)


def test_a_process_refusing_an_account_never_shows_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        load({"COVIDTECH_KAFKA_USERNAME": "a", "COVIDTECH_KAFKA_PASSWORD": "secret'pw"})
    assert "secret" not in str(refused.value)


def test_development_needs_no_account_and_talks_plaintext() -> None:
    from covidtech import kafka_clients
    from projections.cassandra import build_cluster

    s = load({})
    assert (s.kafka_username, s.cassandra_username) == ("", "")
    assert kafka_clients.connection(s) == {"bootstrap_servers": "127.0.0.1:9092"}
    assert kafka_clients.faust_credentials(s) is None
    assert build_cluster(s).auth_provider is None


def test_the_service_passwords_are_masked_in_describe_and_passed_on_in_as_env() -> None:
    s = load(production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS))
    shown = s.describe()
    assert (shown["kafka_username"], shown["kafka_password"]) == ("covidtech-svc", "***")
    assert (shown["cassandra_username"], shown["cassandra_password"]) == ("covidtech_svc", "***")
    assert ACCOUNTS["KAFKA_PASSWORD"] not in str(shown)
    assert ACCOUNTS["CASSANDRA_PASSWORD"] not in str(shown)
    env = s.as_env()
    assert env["COVIDTECH_KAFKA_PASSWORD"] == ACCOUNTS["KAFKA_PASSWORD"]
    assert env["COVIDTECH_CASSANDRA_PASSWORD"] == ACCOUNTS["CASSANDRA_PASSWORD"]
    assert load(env) == s  # a child process runs with exactly these settings
    assert load({}).describe()["kafka_password"] == ""


def test_every_client_logs_in_with_the_accounts() -> None:
    from cassandra.auth import PlainTextAuthProvider

    from covidtech import kafka_clients
    from projections.cassandra import build_cluster

    s = load(production(SECRET=OWN_QR, TOKEN_KEYS=OWN_KEYS))
    assert kafka_clients.connection(s) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "covidtech-svc",
        "sasl_plain_password": ACCOUNTS["KAFKA_PASSWORD"],
    }
    credentials = kafka_clients.faust_credentials(s)
    assert credentials is not None
    assert (credentials.username, credentials.password) == (
        "covidtech-svc",
        ACCOUNTS["KAFKA_PASSWORD"],
    )
    assert (credentials.protocol.value, credentials.mechanism.value) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
    )
    auth = build_cluster(s).auth_provider
    assert isinstance(auth, PlainTextAuthProvider)
    assert (auth.username, auth.password) == ("covidtech_svc", ACCOUNTS["CASSANDRA_PASSWORD"])


def test_a_topic_prefix_gives_the_app_id_of_its_own_unless_one_is_set() -> None:
    """Deployments on one cluster with different prefixes must not share the workers'
    consumer group and state: the commit records count offsets per catalogue topic."""
    assert load({}).app_id == "covidtech"
    assert load({"COVIDTECH_TOPIC_PREFIX": "hcm."}).app_id == "covidtech-hcm"
    explicit = {"COVIDTECH_TOPIC_PREFIX": "hcm.", "COVIDTECH_APP_ID": "ops"}
    assert load(explicit).app_id == "ops"
    # A child process started with ``as_env()`` keeps the same id.
    assert load(load({"COVIDTECH_TOPIC_PREFIX": "x/y."}).as_env()).app_id == "covidtech-x-y"
