"""Typed settings, read once from the environment and validated at start.

Every variable has the prefix ``COVIDTECH_``. A bad value raises :class:`SettingsError`
naming the variable, so a process fails at start instead of mid-stream. Secrets are never
part of ``repr`` (see :meth:`Settings.describe`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from covidtech.tokens import KeySet, TokenSigner
    from domain.certificate import CertificateKeys
    from domain.epidemiology import EpidemiologyRules
    from domain.results import ResultRules
    from domain.rules import PresenceRules
    from domain.status import StatusRules

T = TypeVar("T")

PREFIX = "COVIDTECH_"
DEV_SECRET = "dev-only-secret-change-me-in-production"
#: The development token key: its secret is public (it is in this file), so the production
#: profile refuses it, as it refuses ``DEV_SECRET``.
DEV_TOKEN_KEYS = "dev:dev-only-token-key-change-me-in-production"
#: The development certificate key: its seed is derived from a public label (anyone can
#: recompute it), so certificates it signs prove nothing and the production profile refuses it.
DEV_CERT_KEYS = (
    "dev:"
    + base64.b64encode(
        hashlib.sha256(
            b"covidtech/development-certificate-key/v1 (public: never in production)"
        ).digest()
    ).decode()
)
PROFILES = ("development", "production")
#: Shortest secret the production profile accepts (256 bits of base64 text is 43 characters).
PRODUCTION_SECRET_MIN = 32
#: The service accounts' passwords: masked by ``describe``, passed on by ``as_env``.
SERVICE_PASSWORDS = ("kafka_password", "cassandra_password")
#: Account names and passwords go into a broker's JAAS line, ``kafka-storage --add-scram``
#: and CQL: these characters need no quoting in any of them.
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ACCOUNT_PASSWORD = re.compile(r"^[A-Za-z0-9_.~+/=@#%^*!?:-]{1,256}$")


class SettingsError(ValueError):
    """A setting is missing or malformed."""


def _default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "covidtech"


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "covidtech"


@dataclass(frozen=True)
class Settings:
    """One process's configuration. Field ``x`` is read from ``COVIDTECH_X``."""

    # where things live (outside git)
    home: Path = field(default_factory=_default_home, metadata={"doc": "data and logs of services"})
    cache: Path = field(default_factory=_default_cache, metadata={"doc": "Maven-resolved jars"})
    java_home: str = field(default="", metadata={"doc": "JDK 17 for Cassandra and Kafka"})

    # local services: one Kafka broker and one Cassandra node, or a cluster of ``nodes`` of
    # each on loopback addresses 127.0.0.1 .. 127.0.0.N (``covidtech infra up --nodes 3``)
    nodes: int = field(default=1, metadata={"doc": "local Kafka brokers and Cassandra nodes"})

    # Kafka
    kafka_bootstrap: str = field(default="127.0.0.1:9092", metadata={"doc": "bootstrap servers"})
    kafka_port: int = field(default=9092, metadata={"doc": "local broker port"})
    kafka_controller_port: int = field(default=9093, metadata={"doc": "local KRaft port"})
    kafka_heap: str = field(default="1g", metadata={"doc": "local broker heap"})
    topic_prefix: str = field(default="", metadata={"doc": "prefix of every topic (isolation)"})
    derived_topic_prefix: str = field(
        default="", metadata={"doc": "prefix of derived and DLQ topics (default: topic_prefix)"}
    )
    topic_partitions: int = field(default=4, metadata={"doc": "partitions per topic"})
    topic_replication: int = field(default=1, metadata={"doc": "replication factor of topics"})
    kafka_username: str = field(
        default="", metadata={"doc": "SASL/SCRAM-SHA-512 account on the brokers (none: PLAINTEXT)"}
    )
    kafka_password: str = field(default="", metadata={"doc": "password of kafka_username"})

    # Cassandra
    cassandra_contact_points: tuple[str, ...] = field(
        default=("127.0.0.1",), metadata={"doc": "comma-separated hosts"}
    )
    cassandra_port: int = field(default=9042, metadata={"doc": "CQL port"})
    cassandra_storage_port: int = field(default=7000, metadata={"doc": "local node gossip port"})
    cassandra_local_dc: str = field(default="datacenter1", metadata={"doc": "local data centre"})
    cassandra_heap: str = field(default="1g", metadata={"doc": "local node heap"})
    keyspace: str = field(default="covidtech", metadata={"doc": "keyspace of the projections"})
    replication_factor: int = field(default=1, metadata={"doc": "keyspace replication factor"})
    cassandra_username: str = field(
        default="", metadata={"doc": "Cassandra role to log in as (none: no authentication)"}
    )
    cassandra_password: str = field(default="", metadata={"doc": "password of cassandra_username"})

    # processes
    app_id: str = field(default="covidtech", metadata={"doc": "Faust app id (consumer group)"})
    ingest_port: int = field(default=8001, metadata={"doc": "ingest API port"})
    read_port: int = field(default=8002, metadata={"doc": "read API port"})
    worker_web_port: int = field(default=6066, metadata={"doc": "Faust worker web port"})
    worker_batch: int = field(
        default=2000,
        metadata={"doc": "most source messages an agent folds and commits as one batch"},
    )
    worker_lanes: int = field(
        default=4,
        metadata={"doc": "batches each agent of a worker processes at once (partition % lanes)"},
    )
    worker_prune_seconds: int = field(
        default=600,
        metadata={"doc": "seconds between the passes pruning worker state past retention"},
    )
    profile: str = field(
        default="development",
        metadata={
            "doc": "development or production: production refuses the development keys, a "
            "broker that auto-creates topics, missing topics, and missing service accounts"
        },
    )
    secret: str = field(
        default=DEV_SECRET,
        metadata={"doc": "HMAC key of QR codes and paging cursors (tokens have their own keys)"},
    )
    token_keys: str = field(
        default=DEV_TOKEN_KEYS,
        metadata={
            "doc": "token keys as kid:secret pairs, comma-separated; the first signs, all "
            "verify (rotate by putting a new key first)"
        },
    )
    token_max_ttl: str = field(
        default="30d",
        metadata={
            "doc": "longest lifetime of a token issued from the CLI (`covidtech token issue`)"
        },
    )
    cert_keys: str = field(
        default=DEV_CERT_KEYS,
        metadata={
            "doc": "vaccination certificate keys as kid:base64(32-byte Ed25519 seed) pairs, "
            "comma-separated; the first signs, all are published and verify"
        },
    )
    cert_validity: str = field(
        default="365d", metadata={"doc": "how long a vaccination certificate is valid"}
    )
    person_token_ttl: str = field(
        default="30d",
        metadata={
            "doc": "lifetime of a citizen's person token (registration, sign-in with the "
            "person QR); the app signs in again with the QR it holds"
        },
    )

    # per-hundred denominators: census populations times this (simulations only)
    population_scale: float = field(
        default=1.0,
        metadata={
            "doc": "factor on the census populations that coverage per hundred divides by "
            "(a simulation of a few thousand people; 1: the census)"
        },
    )

    # domain rules (DESIGN's numbers): overrides as name=value, comma-separated
    rules: str = field(
        default="",
        metadata={"doc": "domain rule overrides, e.g. default_dwell=45m,cluster_min_cases=4"},
    )

    def domain_rules(self) -> tuple[PresenceRules, ResultRules]:
        """The presence and result rules: DESIGN's defaults with ``rules`` applied."""
        return parse_rules(self.rules)

    def epidemiology_rules(self) -> EpidemiologyRules:
        """The Rt rules (serial interval, window, prior, minimum cases) with ``rules`` applied."""
        return parse_rule_sets(self.rules)[2]

    def status_rules(self) -> StatusRules:
        """The check-in status rules (windows of RED, YELLOW, recovery) with ``rules`` applied."""
        return parse_rule_sets(self.rules)[3]

    def describe(self) -> dict[str, str]:
        """Settings as strings for logs and ``covidtech status``, secrets masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "secret":
                out[f.name] = "(dev default)" if value == DEV_SECRET else "***"
            elif f.name in SERVICE_PASSWORDS:
                out[f.name] = "***" if value else ""
            elif f.name == "token_keys":
                kids = ",".join(self.token_keyset().ids)
                out[f.name] = (
                    f"{kids} (dev default)" if value == DEV_TOKEN_KEYS else f"{kids} (***)"
                )
            elif f.name == "cert_keys":
                kids = ",".join(self.certificate_keys().ids)
                out[f.name] = f"{kids} (dev default)" if value == DEV_CERT_KEYS else f"{kids} (***)"
            elif isinstance(value, tuple):
                out[f.name] = ",".join(value)
            else:
                out[f.name] = str(value)
        return out

    def as_env(self) -> dict[str, str]:
        """These settings as ``COVIDTECH_*`` variables, secret included: what a child
        process (a worker, an API) needs to run with exactly these settings."""
        env = {f"{PREFIX}{k.upper()}": v for k, v in self.describe().items()}
        env[f"{PREFIX}SECRET"] = self.secret
        env[f"{PREFIX}TOKEN_KEYS"] = self.token_keys
        env[f"{PREFIX}CERT_KEYS"] = self.cert_keys
        for name in SERVICE_PASSWORDS:
            env[f"{PREFIX}{name.upper()}"] = getattr(self, name)
        return env

    def token_keyset(self) -> KeySet:
        """The token keys (``token_keys``) parsed: the first signs, every one verifies."""
        from covidtech.tokens import KeySet

        return KeySet.parse(self.token_keys)

    def token_signer(self) -> TokenSigner:
        """Issues tokens under the signing key and verifies them under every key."""
        from covidtech.tokens import TokenSigner

        return TokenSigner(self.token_keyset())

    def certificate_keys(self) -> CertificateKeys:
        """The certificate keys (``cert_keys``) parsed: the first signs, every one's public
        key is published and verifies."""
        from domain.certificate import CertificateKeys

        return CertificateKeys.parse(self.cert_keys)

    def certificate_validity(self) -> timedelta:
        return parse_duration(self.cert_validity)

    @property
    def production(self) -> bool:
        return self.profile == "production"

    @property
    def kafka_lib(self) -> Path:
        return self.cache / "lib" / "kafka"

    @property
    def kafka_tools_lib(self) -> Path:
        return self.cache / "lib" / "kafka-tools"

    @property
    def cassandra_lib(self) -> Path:
        return self.cache / "lib" / "cassandra"

    def topic(self, name: str) -> str:
        """Full name of one of the DESIGN.md topics, with this deployment's prefix.

        Derived and dead-letter topics take ``derived_topic_prefix`` when it is set, so a
        replay can rebuild them beside the live ones from the same source topics."""
        from covidtech.topics import is_derived

        if self.derived_topic_prefix and is_derived(name):
            return f"{self.derived_topic_prefix}{name}"
        return f"{self.topic_prefix}{name}"


_DURATION = re.compile(r"^(-?\d+)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> timedelta:
    """``45m``, ``72h``, ``21d``, ``-48h``, ``500ms`` as a timedelta (ValueError otherwise)."""
    m = _DURATION.match(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a duration like 45m, 72h or 21d")
    return timedelta(seconds=int(m[1]) * _UNITS[m[2]])


def parse_rules(raw: str) -> tuple[PresenceRules, ResultRules]:
    """``PresenceRules`` and ``ResultRules`` with the overrides in ``raw``
    (``name=value,...``; durations as ``45m``, ``72h``, ``21d``, ``-48h``)."""
    presence, results, *_ = parse_rule_sets(raw)
    return presence, results


def parse_rule_sets(
    raw: str,
) -> tuple[PresenceRules, ResultRules, EpidemiologyRules, StatusRules]:
    """Every rule set with the overrides in ``raw`` (see :func:`parse_rules`); a name
    belongs to exactly one set."""
    from dataclasses import replace

    from domain.epidemiology import DEFAULT_RULES as EPI_RULES
    from domain.results import DEFAULT_RULES as RESULT_RULES
    from domain.rules import DEFAULT_RULES as PRESENCE_RULES
    from domain.status import DEFAULT_RULES as STATUS_RULES

    changes: list[dict[str, Any]] = [{}, {}, {}, {}]
    defaults = (PRESENCE_RULES, RESULT_RULES, EPI_RULES, STATUS_RULES)
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        owner = next((i for i, d in enumerate(defaults) if name in _field_names(d)), None)
        if not sep or owner is None:
            known = sorted(n for d in defaults for n in _field_names(d))
            raise SettingsError(
                f"{PREFIX}RULES: {item!r} is not name=value with a rule name of {known}"
            )
        if name == "timezone":  # the read API and coverage count local days in it too
            raise SettingsError(
                f"{PREFIX}RULES: timezone is fixed at {PRESENCE_RULES.timezone} (the read API "
                "and the coverage counts use it as well)"
            )
        current = getattr(defaults[owner], name)
        try:
            if isinstance(current, timedelta):
                changes[owner][name] = parse_duration(value)
            elif isinstance(current, int):
                changes[owner][name] = int(value)
            elif isinstance(current, float):
                changes[owner][name] = float(value)
            else:
                changes[owner][name] = value
        except ValueError as e:
            raise SettingsError(f"{PREFIX}RULES: {name}: {e}") from e
    try:
        return (
            replace(PRESENCE_RULES, **changes[0]),
            replace(RESULT_RULES, **changes[1]),
            replace(EPI_RULES, **changes[2]),
            replace(STATUS_RULES, **changes[3]),
        )
    except ValueError as e:
        raise SettingsError(f"{PREFIX}RULES: {e}") from e


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in fields(obj)}


def _parse_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as e:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not an integer") from e
    if value < 0:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} must not be negative")
    return value


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as e:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not a number") from e
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} must be a positive number")
    return value


def _parse_tuple(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in raw.split(",") if x.strip())
    if not items:
        raise SettingsError(f"{PREFIX}{name.upper()} must name at least one host")
    return items


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "int": _parse_int,
    "float": _parse_float,
    "Path": lambda _n, raw: Path(raw).expanduser(),
    "tuple[str, ...]": _parse_tuple,
    "str": lambda _n, raw: raw,
}


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``); raise SettingsError if invalid."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(PREFIX + f.name.upper())
        if raw is None or raw == "":
            continue
        parser = _PARSERS[str(f.type)]
        values[f.name] = parser(f.name, raw)
    values = prefix_defaults(cluster_defaults(values))
    settings = Settings(**values)
    _validate(settings)
    return settings


def local_hosts(nodes: int) -> tuple[str, ...]:
    """The loopback addresses of a local cluster's nodes: 127.0.0.1 .. 127.0.0.N."""
    return tuple(f"127.0.0.{i}" for i in range(1, nodes + 1))


def cluster_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """With ``nodes`` > 1, what was not set explicitly points at the local cluster: every
    broker and node as bootstrap servers and contact points, replication 3 (or the node
    count) for topics and the keyspace."""
    nodes = values.get("nodes", 1)
    if nodes <= 1:
        return values
    hosts = local_hosts(nodes)
    port = values.get("kafka_port", 9092)
    out = dict(values)
    out.setdefault("kafka_bootstrap", ",".join(f"{h}:{port}" for h in hosts))
    out.setdefault("cassandra_contact_points", hosts)
    out.setdefault("topic_replication", min(3, nodes))
    out.setdefault("replication_factor", min(3, nodes))
    return out


def prefix_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """With a ``topic_prefix`` and no explicit ``app_id``, the app id names the prefix too
    (``covidtech-<prefix>``): the app id is the consumer group and names the workers' state
    changelogs, whose commit records count offsets per catalogue topic. Two deployments on one
    cluster with different prefixes but one app id would share that state, and a worker would
    skip the other deployment's offsets as applied (seen in a walkthrough run)."""
    prefix = values.get("topic_prefix", "")
    if not prefix or "app_id" in values:
        return values
    tail = re.sub(r"[^A-Za-z0-9_.-]", "-", prefix).strip(".-")
    return {**values, "app_id": f"covidtech-{tail}" if tail else "covidtech"}


def _validate(s: Settings) -> None:
    for port_name in (
        "kafka_port",
        "kafka_controller_port",
        "cassandra_port",
        "cassandra_storage_port",
        "ingest_port",
        "read_port",
        "worker_web_port",
    ):
        port = getattr(s, port_name)
        if not 0 < port < 65536:
            raise SettingsError(f"{PREFIX}{port_name.upper()}={port} is not a TCP port")
    if not 1 <= s.nodes <= 9:
        raise SettingsError(f"{PREFIX}NODES={s.nodes} must be between 1 and 9")
    if s.topic_partitions < 1:
        raise SettingsError(f"{PREFIX}TOPIC_PARTITIONS must be at least 1")
    if not 1 <= s.worker_batch <= 100_000:
        raise SettingsError(f"{PREFIX}WORKER_BATCH={s.worker_batch} must be between 1 and 100000")
    if not 1 <= s.worker_lanes <= 64:
        raise SettingsError(f"{PREFIX}WORKER_LANES={s.worker_lanes} must be between 1 and 64")
    if s.replication_factor < 1 or s.topic_replication < 1:
        raise SettingsError("replication factors must be at least 1")
    if not s.keyspace.replace("_", "").isalnum() or not s.keyspace[0].isalpha():
        raise SettingsError(f"{PREFIX}KEYSPACE={s.keyspace!r} is not a valid keyspace name")
    if len(s.secret) < 16:
        raise SettingsError(f"{PREFIX}SECRET must be at least 16 characters")
    try:
        s.token_keyset()
    except ValueError as e:
        raise SettingsError(f"{PREFIX}TOKEN_KEYS: {e}") from None
    try:
        s.certificate_keys()
    except ValueError as e:
        raise SettingsError(f"{PREFIX}CERT_KEYS: {e}") from None
    try:
        if parse_duration(s.cert_validity) < timedelta(hours=1):
            raise ValueError("must be at least 1h")
    except ValueError as e:
        raise SettingsError(f"{PREFIX}CERT_VALIDITY={s.cert_validity!r}: {e}") from None
    if not (math.isfinite(s.population_scale) and s.population_scale > 0):
        raise SettingsError(f"{PREFIX}POPULATION_SCALE={s.population_scale} must be positive")
    if s.profile not in PROFILES:
        raise SettingsError(f"{PREFIX}PROFILE={s.profile!r} must be one of {', '.join(PROFILES)}")
    _check_service_accounts(s)
    if s.production:
        _refuse_development_keys(s)
    parse_rule_sets(s.rules)  # a bad rule fails the start, naming it
    try:
        if parse_duration(s.token_max_ttl) <= timedelta(0):
            raise ValueError("must be positive")
    except ValueError as e:
        raise SettingsError(f"{PREFIX}TOKEN_MAX_TTL={s.token_max_ttl!r}: {e}") from None
    try:
        if parse_duration(s.person_token_ttl) <= timedelta(0):
            raise ValueError("must be positive")
    except ValueError as e:
        raise SettingsError(f"{PREFIX}PERSON_TOKEN_TTL={s.person_token_ttl!r}: {e}") from None
    for heap_name in ("kafka_heap", "cassandra_heap"):
        heap = getattr(s, heap_name)
        if not (heap[:-1].isdigit() and heap[-1] in "mgMG"):
            raise SettingsError(f"{PREFIX}{heap_name.upper()}={heap!r} must look like 512m or 1g")


def _refuse_development_keys(s: Settings) -> None:
    """The production profile starts only with keys of its own, long enough."""
    dev_secrets = {DEV_SECRET, DEV_TOKEN_KEYS.partition(":")[2]}
    pairs = [item.strip().partition(":") for item in s.token_keys.split(",")]
    if s.secret in dev_secrets or any(secret in dev_secrets for _, _, secret in pairs):
        raise SettingsError(
            f"{PREFIX}PROFILE=production refuses the development keys: set {PREFIX}SECRET and "
            f"{PREFIX}TOKEN_KEYS to secrets of your own"
        )
    short = [kid for kid, _, secret in pairs if len(secret) < PRODUCTION_SECRET_MIN]
    if len(s.secret) < PRODUCTION_SECRET_MIN or short:
        named = f"{PREFIX}SECRET" if not short else f"{PREFIX}TOKEN_KEYS key {short[0]!r}"
        raise SettingsError(
            f"{PREFIX}PROFILE=production needs secrets of {PRODUCTION_SECRET_MIN} characters or "
            f"more: {named} is shorter"
        )
    if any(secret == s.secret for _, _, secret in pairs):
        raise SettingsError(f"{PREFIX}TOKEN_KEYS must not reuse {PREFIX}SECRET (the QR key)")
    if _public_keys(DEV_CERT_KEYS) & _public_keys(s.cert_keys):
        raise SettingsError(
            f"{PREFIX}PROFILE=production refuses the development certificate key: set "
            f"{PREFIX}CERT_KEYS to kid:base64(32 random bytes) of your own"
        )


def _public_keys(cert_keys: str) -> set[str]:
    """The public keys of a ``cert_keys`` text (however its seeds are spelt in base64)."""
    from domain.certificate import CertificateKeys

    document = CertificateKeys.parse(cert_keys).public.document()
    return {k["public_key"] for k in document["keys"]}


def _check_service_accounts(s: Settings) -> None:
    """Each account is a name and a password, both or neither; production needs both."""
    for service in ("kafka", "cassandra"):
        name, password = (getattr(s, f"{service}_{x}") for x in ("username", "password"))
        var = f"{PREFIX}{service.upper()}"
        if s.production and not name:
            raise SettingsError(
                f"{PREFIX}PROFILE=production needs the {service.capitalize()} account: set "
                f"{var}_USERNAME and {var}_PASSWORD"
            )
        if bool(name) != bool(password):
            raise SettingsError(f"{var}_USERNAME and {var}_PASSWORD are set together or not at all")
        if name and not _ACCOUNT_NAME.match(name):
            raise SettingsError(f"{var}_USERNAME={name!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        if password and not _ACCOUNT_PASSWORD.match(password):
            raise SettingsError(
                f"{var}_PASSWORD must be 1-256 of A-Z a-z 0-9 and _.~+/=@#%^*!?:- (no quotes, "
                "commas, brackets, backslashes or spaces)"
            )
    if s.cassandra_username == "cassandra":
        raise SettingsError(
            f"{PREFIX}CASSANDRA_USERNAME must not be 'cassandra': the default superuser is "
            "disabled once the configured role exists"
        )


_cached: Settings | None = None


def get() -> Settings:
    """The process-wide settings, loaded on first use."""
    global _cached
    if _cached is None:
        _cached = load()
    return _cached


def with_overrides(base: Settings, **changes: T) -> Settings:
    """A copy of ``base`` with some fields changed (tests use it to isolate)."""
    from dataclasses import replace

    s = replace(base, **changes)  # type: ignore[arg-type]
    _validate(s)
    return s
