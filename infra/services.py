"""Start and stop the real Kafka and Cassandra from Maven-resolved jars.

Layout (outside git; see ``Settings.cache`` and ``Settings.home``)::

    <cache>/lib/kafka/*.jar        resolved from infra/kafka/pom.xml
    <cache>/lib/cassandra/*.jar    resolved from infra/cassandra/pom.xml
    <home>/kafka/{conf,data,logs}  broker config rendered from infra/kafka/, data, logs, pid
    <home>/cassandra/{conf,data,logs}

A lib folder is complete only when its ``.resolved`` marker holds the hash of the POM that made
it; a changed POM re-resolves. Services run as detached processes with a pid file, so ``up`` in
one command and ``down`` in another work; ``up`` is idempotent (a running service is reused).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from covidtech.kafka_clients import SASL_MECHANISM
from covidtech.progress import bar
from covidtech.settings import Settings

INFRA_DIR = Path(__file__).resolve().parent


class InfraError(RuntimeError):
    """A service could not be resolved, started, reached or stopped."""


@dataclass(frozen=True)
class Service:
    """A JVM service managed by this module."""

    name: str
    pom: Path
    port: int
    node: int = 0  # 0: the single local node; 1..N: a node of the local cluster
    host: str = "127.0.0.1"

    @property
    def label(self) -> str:
        return self.name if self.node == 0 else f"{self.name}-{self.node}"

    def lib(self, s: Settings) -> Path:
        return s.cache / "lib" / self.name

    def root(self, s: Settings) -> Path:
        return s.home / self.label

    def pid_file(self, s: Settings) -> Path:
        return self.root(s) / "pid"

    def log_file(self, s: Settings) -> Path:
        return self.root(s) / "logs" / "stdout.log"


def node_ids(s: Settings) -> list[int]:
    """0 for the single local node, else 1..N (node i listens on 127.0.0.i)."""
    return [0] if s.nodes == 1 else list(range(1, s.nodes + 1))


def _host(node: int) -> str:
    return f"127.0.0.{node or 1}"


def kafka(s: Settings, node: int = 0) -> Service:
    return Service("kafka", INFRA_DIR / "kafka" / "pom.xml", s.kafka_port, node, _host(node))


def cassandra(s: Settings, node: int = 0) -> Service:
    pom = INFRA_DIR / "cassandra" / "pom.xml"
    return Service("cassandra", pom, s.cassandra_port, node, _host(node))


def kafka_nodes(s: Settings) -> list[Service]:
    return [kafka(s, n) for n in node_ids(s)]


def cassandra_nodes(s: Settings) -> list[Service]:
    return [cassandra(s, n) for n in node_ids(s)]


def kafka_tools(s: Settings) -> Service:
    return Service("kafka-tools", INFRA_DIR / "kafka-tools" / "pom.xml", 0)


# ---------------------------------------------------------------- jars


def expected_jars(service: Service) -> set[str]:
    """The jar names of ``infra/<service>/jars.txt``: what the POM resolves to, reviewed in
    git like a lock file (and the total of the progress bar while resolving)."""
    listing = service.pom.parent / "jars.txt"
    if not listing.exists():
        return set()
    lines = (line.strip() for line in listing.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


_JAR_IN_LINE = re.compile(r"([A-Za-z0-9_.+-]+\.jar)\b")


def resolve(service: Service, s: Settings, log: Callable[[str], None] = print) -> Path:
    """Copy the service's runtime jars from Maven Central into its lib folder (once)."""
    lib = service.lib(s)
    digest = hashlib.sha256(service.pom.read_bytes()).hexdigest()
    marker = lib / ".resolved"
    if marker.exists() and marker.read_text().strip() == digest:
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{service.name}-", dir=lib.parent))
    log(f"resolving {service.name} jars from Maven Central into {lib} ...")
    started = time.monotonic()
    cmd = [
        mvn,
        "-B",
        "-f",
        str(service.pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    expected = expected_jars(service)
    seen: set[str] = set()
    output: list[str] = []
    last = 0.0
    # Maven names each jar as it downloads it and again as it copies it: with the expected
    # list, that is a progress bar.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            seen.update(m for m in _JAR_IN_LINE.findall(line) if m in expected)
            if expected and time.monotonic() - last >= 2:
                last = time.monotonic()
                log(
                    f"{bar(len(seen), len(expected))} {service.name}: {len(seen)} of "
                    f"{len(expected)} jars"
                )
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(
            f"mvn failed for {service.name} (exit {proc.returncode}):\n" + "".join(output)[-8000:]
        )
    got = {p.name for p in staging.glob("*.jar")}
    if expected and got != expected:
        log(
            f"warning: {service.name} resolved to other jars than infra/{service.name}/"
            f"jars.txt lists (new: {sorted(got - expected)[:5]}, missing: "
            f"{sorted(expected - got)[:5]}); review and update the list"
        )
    (staging / ".resolved").write_text(digest + "\n")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    log(
        f"{bar(1, 1)} resolved {service.name}: {len(got)} jars in {time.monotonic() - started:.1f}s"
    )
    return lib


# ---------------------------------------------------------------- java


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def find_java17(s: Settings) -> str:
    """A JDK 17 ``java``: Cassandra 5.0 cannot run on JDK 24+, Kafka 4 needs 17+."""
    candidates: list[str] = []
    for home in (s.java_home, os.environ.get("JAVA_HOME", "")):
        if home:
            candidates.append(str(Path(home) / "bin" / "java"))
    candidates += sorted(str(p / "bin" / "java") for p in Path("/usr/lib/jvm").glob("*17*"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    for java in candidates:
        if Path(java).exists() and _java_major(java) == 17:
            return java
    raise InfraError(
        "no JDK 17 found (set COVIDTECH_JAVA_HOME); Cassandra 5.0 runs on 11 or 17, not 24+"
    )


# ---------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def running_pid(service: Service, s: Settings) -> int | None:
    """The pid of the running service, or None (a stale pid file is removed)."""
    pf = service.pid_file(s)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
    except ValueError:
        pf.unlink(missing_ok=True)
        return None
    if _alive(pid):
        return pid
    pf.unlink(missing_ok=True)
    return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _raise_fd_limit() -> None:
    """Kafka keeps several files open per partition segment, Cassandra per SSTable: give the
    JVMs the hard limit of open files (the soft default is far too low for either)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # root may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (1_048_576, 1_048_576))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _spawn(service: Service, s: Settings, argv: list[str], env: dict[str, str]) -> int:
    root = service.root(s)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    with open(service.log_file(s), "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=root,
            preexec_fn=_raise_fd_limit,
        )
    service.pid_file(s).write_text(f"{proc.pid}\n")
    return proc.pid


def _render(template: Path, target: Path, **values: object) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    text = Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    target.write_text(text)


def start_kafka(s: Settings, log: Callable[[str], None] = print, node: int = 0) -> int:
    """Start a KRaft broker+controller (formatting its storage on first start): the single
    local one, or node ``node`` of the local cluster; return its pid."""
    svc = kafka(s, node)
    pid = running_pid(svc, s)
    if pid is not None:
        return pid
    if port_open(s.kafka_port, svc.host):
        raise InfraError(f"{svc.host}:{s.kafka_port} is taken by a process this tool did not start")
    lib = resolve(svc, s, log)
    java = find_java17(s)
    root = svc.root(s)
    conf = root / "conf" / "server.properties"
    data = root / "data"
    _check_scram_account(s, root, data)
    _render(
        INFRA_DIR / "kafka" / "server.properties",
        conf,
        listener="SASL_PLAINTEXT" if s.kafka_username else "PLAINTEXT",
        port=s.kafka_port,
        controller_port=s.kafka_controller_port,
        data_dir=data,
        partitions=s.topic_partitions,
        node_id=node or 1,
        host=svc.host,
        voters=",".join(f"{n or 1}@{_host(n)}:{s.kafka_controller_port}" for n in node_ids(s)),
        replication=min(3, s.nodes),
        min_insync=2 if s.nodes >= 3 else 1,
    )
    scram: list[str] = []
    if s.kafka_username:
        # The account's password is in the JAAS line: the file is the owner's alone.
        conf.chmod(0o600)
        sasl = Template((INFRA_DIR / "kafka" / "sasl.properties").read_text())
        with conf.open("a") as f:
            f.write(sasl.substitute(username=s.kafka_username, password=s.kafka_password))
        account = f"name={s.kafka_username},password={s.kafka_password}"
        scram = ["--add-scram", f"{SASL_MECHANISM}=[{account}]"]
    shutil.copy(INFRA_DIR / "kafka" / "log4j2.properties", root / "conf" / "log4j2.properties")
    cp = f"{lib}/*"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_props = [
        f"-Dlog4j2.configurationFile={root / 'conf' / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={logs}",
    ]
    if not (data / "meta.properties").exists():
        fmt = subprocess.run(
            [
                java,
                *log_props,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                "covidtech-local-cluster-0",
                "-c",
                str(conf),
                "--ignore-formatted",
                *scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise InfraError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
        if s.kafka_username:
            (root / SCRAM_MARKER).write_text(s.kafka_username + "\n")
    heap = s.kafka_heap
    argv = [
        java,
        f"-Xms{heap}" if heap.endswith("m") else "-Xms512m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        *log_props,
        "-cp",
        cp,
        "kafka.Kafka",
        str(conf),
    ]
    return _spawn(svc, s, argv, dict(os.environ))


# SASL/SCRAM of the local brokers (``kafka_username`` set): the file beside a broker's data
# naming the account its storage was formatted with. SCRAM accounts live in the KRaft
# metadata, so a broker formatted without one (or with another) cannot take one from the
# settings: ``covidtech infra reset`` formats anew.
SCRAM_MARKER = "scram-account"


def _check_scram_account(s: Settings, root: Path, data: Path) -> None:
    if not s.kafka_username or not (data / "meta.properties").exists():
        return
    marker = root / SCRAM_MARKER
    formatted = marker.read_text().strip() if marker.exists() else ""
    if formatted != s.kafka_username:
        had = f"the SCRAM account {formatted!r}" if formatted else "no SCRAM account"
        raise InfraError(
            f"the Kafka storage in {data} was formatted with {had}, not "
            f"{s.kafka_username!r} (COVIDTECH_KAFKA_USERNAME): wipe it with `covidtech infra "
            "reset` (or use another COVIDTECH_HOME) to format it with the account"
        )


# The commit log settings of ``infra/cassandra/cassandra.yaml`` (durable), and those a
# benchmark may start a node with to compare (``start_cassandra(commitlog=...)``).
DURABLE_COMMITLOG = "commitlog_sync: batch\n"
PERIODIC_COMMITLOG = "commitlog_sync: periodic\ncommitlog_sync_period: 10s\n"


def start_cassandra(
    s: Settings,
    log: Callable[[str], None] = print,
    node: int = 0,
    commitlog: str = DURABLE_COMMITLOG,
) -> int:
    """Start a Cassandra 5.0 node on JDK 17 with a fixed heap: the single local one, or node
    ``node`` of the local cluster; return its pid. ``commitlog`` replaces the template's
    commit log settings (``bench.streams --compare-commitlog`` runs a periodic node)."""
    svc = cassandra(s, node)
    pid = running_pid(svc, s)
    if pid is not None:
        return pid
    if port_open(s.cassandra_port, svc.host):
        raise InfraError(
            f"{svc.host}:{s.cassandra_port} is taken by a process this tool did not start"
        )
    lib = resolve(svc, s, log)
    java = find_java17(s)
    root = svc.root(s)
    conf_dir = root / "conf"
    data = root / "data"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _render(
        INFRA_DIR / "cassandra" / "cassandra.yaml",
        conf_dir / "cassandra.yaml",
        port=s.cassandra_port,
        storage_port=s.cassandra_storage_port,
        data_dir=data,
        host=svc.host,
        seed=_host(node_ids(s)[0]),
        authenticator="PasswordAuthenticator" if s.cassandra_username else "AllowAllAuthenticator",
    )
    rendered = conf_dir / "cassandra.yaml"
    text = rendered.read_text()
    if DURABLE_COMMITLOG not in text:
        raise InfraError("infra/cassandra/cassandra.yaml lost its commit log settings")
    rendered.write_text(text.replace(DURABLE_COMMITLOG, commitlog))
    if node:
        # A new cluster of empty nodes: evenly spaced tokens, no bootstrap streaming, so the
        # nodes can start together.
        step = 2**64 // s.nodes
        token = -(2**63) + (node - 1) * step
        with (conf_dir / "cassandra.yaml").open("a") as f:
            f.write(f"initial_token: {token}\nauto_bootstrap: false\n")
    shutil.copy(INFRA_DIR / "cassandra" / "logback.xml", conf_dir / "logback.xml")
    jamm = next(lib.glob("jamm-*.jar"), None)
    if jamm is None:
        raise InfraError(f"jamm agent jar missing in {lib}; run `covidtech infra reset --jars`")
    flags = [
        line.strip()
        for line in (INFRA_DIR / "cassandra" / "jvm17.options").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if s.cassandra_username:
        # PasswordAuthenticator: a new node creates system_auth replicated to every node, so
        # the default superuser (made at once: jvm17.options) and the role infra.lifecycle
        # makes with it are on every replica (infra.lifecycle alters an older keyspace).
        flags.append(f"-Dcassandra.system_auth.default_rf={s.nodes}")
    heap = s.cassandra_heap
    argv = [
        java,
        f"-javaagent:{jamm}",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *flags,
        f"-Dcassandra.config=file://{conf_dir / 'cassandra.yaml'}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={logs}",
        f"-Dlogback.configurationFile={conf_dir / 'logback.xml'}",
        "-cp",
        f"{conf_dir}:{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    return _spawn(svc, s, argv, dict(os.environ))


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    pid_alive: Callable[[], bool] | None = None,
    log_file: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid_alive is not None and not pid_alive():
            tail = (
                log_file.read_text(errors="replace")[-3000:]
                if log_file and log_file.exists()
                else ""
            )
            raise InfraError(f"{what} exited during start-up; last log lines:\n{tail}")
        time.sleep(0.5)
    raise InfraError(f"{what} did not answer within {timeout:.0f}s")


def stop(service: Service, s: Settings, timeout: float = 90.0) -> bool:
    """SIGTERM the service and wait for it to exit (SIGKILL after ``timeout``)."""
    pid = running_pid(service, s)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        _reap(pid)
        time.sleep(0.3)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            _reap(pid)
            time.sleep(0.1)
    service.pid_file(s).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process in MiB (for status and benchmarks)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
