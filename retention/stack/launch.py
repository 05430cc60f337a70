"""How each service is prepared (config files, first-time formatting) and started.

`prepare(stack, name)` writes the service's configs into its directory, checks them
with the service's own tool where there is one, and returns the command line.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
from collections.abc import Callable
from functools import partial

from retention.stack import certs, config, scram, secure_redis
from retention.stack.process import say, tail
from retention.stack.settings import CLUSTER_NODES, REPO_ROOT, StackError, StackSettings

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"  # the Debian redis-server package depends on redis-tools
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def kafka_java(stack: StackSettings) -> list[str]:
    """The JVM command line for Kafka's main classes, as bin/kafka-run-class.sh builds it."""
    where = stack.service_dir("kafka")
    return [
        "java",
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={stack.log_dir}",
        f"-Dlog4j2.configurationFile={where / 'log4j2.properties'}",
        f"-Dlog4j.configuration=file:{where / 'log4j.properties'}",
        "-cp",
        f"{stack.kafka_libs}/*",  # java expands the wildcard itself
    ]


def cluster_id() -> str:
    """A Kafka Uuid: 16 random bytes, base64url without padding, never starting with '-'
    (the storage tool would read it as an option)."""
    while True:
        text = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def secure_listener(stack: StackSettings) -> config.SecureListener:
    """The SASL_SSL listener's certificate (made on first use) and user."""
    tls = certs.ensure(stack)
    return config.SecureListener(
        keystore=tls.server_keystore,
        keystore_password=tls.keystore_password(),
        ca=tls.ca,
        user=scram.USER,
        password=scram.password(stack),
    )


def prepare_kafka(stack: StackSettings) -> list[str]:
    """Configs, and storage formatted once per fresh data directory; the cluster id is kept
    beside it because formatting an existing directory with another id fails."""
    if not (stack.kafka_installed.is_file() and stack.kafka_libs.is_dir()):
        raise StackError(
            f"kafka {stack.kafka_version} jars are not in {stack.kafka_libs}: "
            "`bash scripts/stack.sh install` downloads them"
        )
    where = stack.service_dir("kafka")
    (where / "data").mkdir(parents=True, exist_ok=True)
    properties = where / "server.properties"
    properties.touch(mode=0o600)  # it holds the keystore's and the PLAIN user's passwords
    properties.chmod(0o600)
    properties.write_text(config.kafka_properties(stack, secure_listener(stack)))
    (where / "log4j2.properties").write_text(config.kafka_log4j2(stack))
    (where / "log4j.properties").write_text(config.kafka_log4j(stack))
    if not (where / "data" / "meta.properties").exists():
        id_file = where / "cluster.id"
        if not id_file.is_file() or not id_file.read_text().strip():
            id_file.write_text(cluster_id() + "\n")
        cid = id_file.read_text().strip()
        say(f"kafka: formatting storage (cluster id {cid})")
        storage = ["kafka.tools.StorageTool", "format", "-t", cid, "-c", str(properties)]
        with stack.log_file("kafka").open("ab") as log:
            done = subprocess.run(
                [*kafka_java(stack), *storage], stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            raise StackError(f"kafka: storage format failed\n{tail(stack.log_file('kafka'))}")
    return [*kafka_java(stack), "kafka.Kafka", str(properties)]


def prepare_redis(stack: StackSettings) -> list[str]:
    conf = stack.service_dir("redis") / "redis.conf"
    conf.write_text(config.redis_conf(stack))
    return [REDIS_SERVER, str(conf)]


def prepare_redis_secure(stack: StackSettings) -> list[str]:
    """The config holds the ACL user's password: readable by us only."""
    conf = stack.service_dir(secure_redis.SERVICE) / "redis.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    password = secure_redis.password(stack)
    conf.write_text(config.redis_secure_conf(stack, certs.ensure(stack), password))
    return [REDIS_SERVER, str(conf)]


def prepare_redis_sentinel(stack: StackSettings) -> list[str]:
    """Sentinel rewrites its config file as it learns (it must be writable)."""
    conf = stack.service_dir("redis-sentinel") / "sentinel.conf"
    conf.write_text(config.sentinel_conf(stack))
    return [REDIS_SERVER, str(conf), "--sentinel"]


def prepare_cluster_node(stack: StackSettings, node: int) -> list[str]:
    conf = stack.service_dir(CLUSTER_NODES[node]) / "redis.conf"
    conf.write_text(config.redis_cluster_conf(stack, node))
    return [REDIS_SERVER, str(conf)]


def prepare_prometheus(stack: StackSettings) -> list[str]:
    """The repo's template rendered; rule_files are relative to it, so rules/ links to the
    repo's rules (`curl -X POST .../-/reload` picks up edits)."""
    where = stack.service_dir("prometheus")
    (where / "data").mkdir(parents=True, exist_ok=True)
    conf = where / "prometheus.yml"
    conf.write_text(config.prometheus_yml(stack))
    rules = where / "rules"
    rules.unlink(missing_ok=True)
    rules.symlink_to(REPO_ROOT / "prometheus" / "rules")
    _check_with(["promtool", "check", "config", str(conf)], "prometheus")
    return [
        PROMETHEUS,
        f"--config.file={conf}",
        f"--storage.tsdb.path={where / 'data'}",
        f"--web.listen-address=127.0.0.1:{stack.prometheus_port}",
        "--web.enable-lifecycle",
    ]


def prepare_alertmanager(stack: StackSettings) -> list[str]:
    where = stack.service_dir("alertmanager")
    (where / "data").mkdir(parents=True, exist_ok=True)
    conf = where / "alertmanager.yml"
    conf.write_text(config.alertmanager_yml(stack))
    _check_with(["amtool", "check-config", str(conf)], "alertmanager")
    return [
        ALERTMANAGER,
        f"--config.file={conf}",
        f"--storage.path={where / 'data'}",
        f"--web.listen-address=127.0.0.1:{stack.alertmanager_port}",
        "--cluster.listen-address=",  # empty: no HA gossip on 0.0.0.0:9094
    ]


def _check_with(command: list[str], name: str) -> None:
    """Validate a config before starting, so that a mistake in it (or in a rule file) is
    reported precisely instead of as a start-up timeout."""
    if shutil.which(command[0]) is None:
        return
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"{name}: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")


PREPARE: dict[str, Callable[[StackSettings], list[str]]] = {
    "kafka": prepare_kafka,
    "redis": prepare_redis,
    secure_redis.SERVICE: prepare_redis_secure,
    "redis-sentinel": prepare_redis_sentinel,
    **{name: partial(prepare_cluster_node, node=i) for i, name in enumerate(CLUSTER_NODES)},
    "prometheus": prepare_prometheus,
    "alertmanager": prepare_alertmanager,
}


def prepare(stack: StackSettings, name: str) -> list[str]:
    stack.service_dir(name).mkdir(parents=True, exist_ok=True)
    return PREPARE[name](stack)


def missing_programs() -> list[str]:
    """The servers and tools the stack runs that this machine lacks."""
    programs = ["java", "openssl", REDIS_SERVER, REDIS_CLI, PROMETHEUS, ALERTMANAGER]
    return [p for p in programs if shutil.which(p) is None]
