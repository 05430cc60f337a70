"""docker-compose.yml: `docker compose config` (the real Compose v2 CLI, built by
scripts/compose.sh) accepts it, and the pieces fit together: mounted files exist,
scrape targets, webhook and datasource URLs name real services and ports, and the
commands the services run are real CLI commands. And it is locked down: ports published
on loopback, required secrets, no Grafana default login, no Prometheus lifecycle API,
pinned images, a Redis password.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.redis_url import Topology, parse_redis_url
from retention.stack.config import directives, redis_cluster_conf, redis_conf
from retention.stack.settings import StackSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_SH = ROOT / "scripts" / "compose.sh"
RETENTION_BIN = ROOT / ".venv" / "bin" / "retention"
SERVICES = {
    "kafka",
    "redis",
    "worker",
    "exporter",
    "prometheus",
    "alertmanager",
    "alert-log",
    "grafana",
}
CLUSTER_NODES = ("redis-cluster-1", "redis-cluster-2", "redis-cluster-3")
CLUSTER_SERVICES = {*CLUSTER_NODES, "redis-cluster-init"}
CLUSTER_ENV = ROOT / "redis-cluster.env"


# The secrets compose requires, as a user would put them in .env.
SECRETS = {"GF_ADMIN_PASSWORD": "grafana-test-secret", "REDIS_PASSWORD": "redis-test-secret"}
# Compose variables these tests set themselves; a value in the caller's environment would
# change what is rendered.
OURS = {*SECRETS, "RETENTION_PUBLISH_ADDRESS"}


def compose(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` with the secrets set (or exactly the variables of `env`)."""
    base = {k: v for k, v in os.environ.items() if k not in OURS}
    return subprocess.run(
        ["bash", str(COMPOSE_SH), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(SECRETS if env is None else env)},
    )


@pytest.fixture(scope="module")
def compose_cli() -> None:
    """Build (once, cached) the Compose v2 plugin; a bare machine needs Go and ~2 minutes."""
    done = subprocess.run(
        ["bash", str(COMPOSE_SH), "install"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def config(compose_cli: None) -> dict[str, Any]:
    """The normalized config of all services, the demo profile included."""
    done = compose("--profile", "demo", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_docker_compose_config_succeeds(compose_cli: None) -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", f"warnings: {done.stderr}"
    services = set(compose("config", "--services").stdout.split())
    assert services == SERVICES
    demo = set(compose("--profile", "demo", "config", "--services").stdout.split())
    assert demo == SERVICES | {"demo"}
    on_cluster = compose("--env-file", str(CLUSTER_ENV), "config", "-q")
    assert on_cluster.returncode == 0 and on_cluster.stderr.strip() == "", on_cluster.stderr
    cluster = compose("--env-file", str(CLUSTER_ENV), "config", "--services")
    assert set(cluster.stdout.split()) == SERVICES | CLUSTER_SERVICES


def test_docker_compose_config_rejects_a_broken_file(compose_cli: None, tmp_path: Path) -> None:
    """The check has teeth: a misspelt key and a dangling dependency are both refused."""
    text = (ROOT / "docker-compose.yml").read_text()
    typo = tmp_path / "typo.yml"
    typo.write_text(
        text.replace(
            '    healthcheck:\n      test: ["CMD", "redis-cli"',
            '    healtcheck:\n      test: ["CMD", "redis-cli"',
        )
    )
    assert typo.read_text() != text
    done = compose("-f", str(typo), "config", "-q")
    assert done.returncode != 0 and "healtcheck" in done.stderr, done.stderr
    dangling = tmp_path / "dangling.yml"
    dangling.write_text(text.replace("depends_on: [prometheus]", "depends_on: [promethues]"))
    done = compose("-f", str(dangling), "config", "-q")
    assert done.returncode != 0 and "promethues" in done.stderr, done.stderr


def test_bind_mounts_exist_in_the_repo(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.exists(), f"{name}: mounts missing {source}"
                assert ROOT in source.parents, f"{name}: mounts {source} from outside the repo"
                assert volume.get("read_only"), f"{name}: repo files are mounted read-only"


def mounted(service: dict[str, Any], container_path: str) -> Path:
    """The repo file behind a container path of a service's bind mounts."""
    for volume in service.get("volumes", []):
        if volume["type"] == "bind" and (
            container_path == volume["target"] or container_path.startswith(volume["target"] + "/")
        ):
            return Path(volume["source"]) / Path(container_path).relative_to(volume["target"])
    raise AssertionError(f"{container_path} is not mounted")


def flag(service: dict[str, Any], name: str) -> str:
    for arg in service["command"]:
        if arg.startswith(f"--{name}="):
            return str(arg.split("=", 1)[1])
    raise AssertionError(f"no --{name}")


def test_prometheus_scrapes_the_services_and_sends_to_alertmanager(config: dict[str, Any]) -> None:
    services = config["services"]
    prom = services["prometheus"]
    path = mounted(prom, flag(prom, "config.file"))
    assert path == ROOT / "prometheus" / "prometheus.compose.yml"
    prom_config = yaml.safe_load(path.read_text())
    rules = prom_config["rule_files"][0]
    assert list(mounted(prom, rules.rsplit("/", 1)[0]).glob("*.yml"))
    env = {n: services[n]["environment"] for n in ("worker", "exporter")}
    want = {
        "retention-exporter": f"exporter:{env['exporter']['RETENTION_EXPORTER_PORT']}",
        "retention-worker": f"worker:{env['worker']['RETENTION_WORKER_METRICS_PORT']}",
    }
    got = {
        c["job_name"]: c["static_configs"][0]["targets"][0] for c in prom_config["scrape_configs"]
    }
    assert got == want
    for n in ("worker", "exporter"):
        assert env[n]["RETENTION_EXPORTER_HOST"] == "0.0.0.0", f"{n} only listens on loopback"
    (am_target,) = prom_config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am_target == "alertmanager:9093"


def test_alertmanager_webhook_reaches_the_alert_log(config: dict[str, Any]) -> None:
    services = config["services"]
    am = services["alertmanager"]
    am_config = yaml.safe_load(mounted(am, flag(am, "config.file")).read_text())
    url = am_config["receivers"][0]["webhook_configs"][0]["url"]
    m = re.fullmatch(r"http://([\w-]+):(\d+)/\S*", url)
    assert m and m[1] in services, url
    log = services[m[1]]
    assert log["command"][-2:] == ["--port", m[2]] and m[2] in log["expose"]
    assert mounted(log, log["command"][2]) == ROOT / "prometheus" / "alert_log.py"


def test_grafana_is_provisioned(config: dict[str, Any]) -> None:
    grafana = config["services"]["grafana"]
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "9090" in str(config["services"]["prometheus"]["ports"][0]["target"])
    providers = yaml.safe_load((provisioning / "dashboards" / "retention.yml").read_text())
    dashboards = mounted(grafana, providers["providers"][0]["options"]["path"])
    assert len(list(dashboards.glob("*.json"))) == 5
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted(grafana, home).is_file()
    assert grafana["ports"][0]["published"] == "3000"


def test_redis_is_durable_and_never_evicts(config: dict[str, Any]) -> None:
    """AOF fsynced every second in a named volume, noeviction: as the local stack's Redis."""
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    args = dict(zip(command[1::2], command[2::2], strict=True))
    args.pop("--requirepass")  # compose's own secret (test_redis_requires_its_password)
    assert args["--appendonly"] == "yes"
    assert args["--appendfsync"] == "everysec"
    assert args["--maxmemory-policy"] == "noeviction"
    (data,) = [v for v in redis["volumes"] if v["target"] == "/data"]
    assert data["type"] == "volume" and data["source"] in config["volumes"]
    local = directives(redis_conf(StackSettings()))
    for name, value in args.items():
        assert local.get(name.removeprefix("--")) == value, f"{name}: the stack has another value"


@pytest.fixture(scope="module")
def cluster_config(compose_cli: None) -> dict[str, Any]:
    """The normalized config with redis-cluster.env, the demo profile included (a profile
    given on the command line replaces the env file's, so both are named)."""
    profiles = ("--profile", "cluster", "--profile", "demo")
    done = compose("--env-file", str(CLUSTER_ENV), *profiles, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_tracker_uses_the_standalone_redis_by_default(config: dict[str, Any]) -> None:
    for name in ("worker", "exporter", "demo"):
        url = config["services"][name]["environment"]["RETENTION_REDIS_URL"]
        deployment = parse_redis_url(url)
        assert deployment.topology is Topology.STANDALONE
        assert deployment.nodes == (("redis", 6379),)


def test_cluster_env_points_the_tracker_at_the_cluster_profile(
    cluster_config: dict[str, Any],
) -> None:
    """Every seed of the tracker's URL is a cluster-mode node of the profile, which the
    one-shot init joins into one cluster."""
    services = cluster_config["services"]
    for name in ("worker", "exporter", "demo"):
        deployment = parse_redis_url(services[name]["environment"]["RETENTION_REDIS_URL"])
        assert deployment.topology is Topology.CLUSTER, name
        assert deployment.nodes == tuple((node, 6379) for node in CLUSTER_NODES)
    for node in CLUSTER_NODES:
        assert services[node]["profiles"] == ["cluster"]
    init = services["redis-cluster-init"]
    assert init["profiles"] == ["cluster"] and init["restart"] == "no"
    assert set(init["depends_on"]) == set(CLUSTER_NODES)
    script = init["command"][0]
    assert "redis-cli --cluster create" in script and "--cluster-replicas 0" in script
    assert all(node in script for node in CLUSTER_NODES)


def test_cluster_nodes_are_durable_like_the_stacks(cluster_config: dict[str, Any]) -> None:
    """Each node runs what the local stack's cluster node runs (AOF, noeviction, cluster
    mode, nodes.conf) in its own volume, and announces its own service name."""
    for i, node in enumerate(CLUSTER_NODES):
        service = cluster_config["services"][node]
        command = service["command"]
        assert command[0] == "redis-server"
        args = dict(zip(command[1::2], command[2::2], strict=True))
        assert args.pop("--cluster-announce-hostname") == node
        assert args.pop("--cluster-preferred-endpoint-type") == "hostname"
        # compose's own secret (test_cluster_nodes_require_the_password)
        args.pop("--requirepass")
        args.pop("--masterauth")
        local = directives(redis_cluster_conf(StackSettings(), i))
        for name, value in args.items():
            assert local.get(name.removeprefix("--")) == value, f"{node} {name}: the stack differs"
        assert args["--cluster-enabled"] == "yes" and args["--maxmemory-policy"] == "noeviction"
        (data,) = [v for v in service["volumes"] if v["target"] == "/data"]
        assert data["type"] == "volume" and data["source"] == f"{node}-data"


def test_kafka_is_the_official_image_in_kraft_mode(config: dict[str, Any]) -> None:
    kafka = config["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("worker", "exporter", "demo"):
        bootstrap = config["services"][name]["environment"]["RETENTION_KAFKA_BOOTSTRAP"]
        assert f"//{bootstrap}" in advertised


def test_demo_profile_runs_the_simulated_sample_feed(config: dict[str, Any]) -> None:
    demo = config["services"]["demo"]
    assert demo["profiles"] == ["demo"]
    assert demo["command"][:3] == ["simulate", "--preset", "sample"]


def test_image_commands_are_real_cli_commands(config: dict[str, Any]) -> None:
    """What the Dockerfile installs runs the commands compose gives it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["retention"\]$', dockerfile, re.M)
    assert pyproject["project"]["scripts"]["retention"] == "retention.cli:app"
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.removesuffix("*")  # the top-level package and its subpackages
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package
    for name, service in config["services"].items():
        if "build" not in service:
            continue
        done = subprocess.run(
            [str(RETENTION_BIN), *service["command"], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (
            f"{name}: `retention {' '.join(service['command'])}` "
            f"is not a valid command:\n{done.stdout}{done.stderr}"
        )


def test_compose_refuses_to_start_without_the_secrets(compose_cli: None) -> None:
    """No default password anywhere: each missing secret stops compose, named."""
    for missing in SECRETS:
        others = {k: v for k, v in SECRETS.items() if k != missing}
        done = compose("config", "-q", env=others)
        assert done.returncode != 0, f"compose started without {missing}"
        assert f"required variable {missing} is missing" in done.stderr, done.stderr


def test_published_ports_listen_on_loopback_unless_opened(config: dict[str, Any]) -> None:
    published = {
        name: service["ports"] for name, service in config["services"].items() if "ports" in service
    }
    assert set(published) == {"exporter", "prometheus", "alertmanager", "grafana"}
    for name, ports in published.items():
        assert [p["host_ip"] for p in ports] == ["127.0.0.1"], name
    opened = compose(
        "config", "--format", "json", env={**SECRETS, "RETENTION_PUBLISH_ADDRESS": "0.0.0.0"}
    )
    assert opened.returncode == 0, opened.stderr
    for name, service in json.loads(opened.stdout)["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "0.0.0.0", name


def test_grafana_admin_password_is_the_secret_and_viewers_cannot_explore(
    config: dict[str, Any],
) -> None:
    env = config["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GF_ADMIN_PASSWORD"]
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # viewers_can_edit would give anonymous viewers Explore (any PromQL) and panel edits
    assert env["GF_USERS_VIEWERS_CAN_EDIT"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_prometheus_has_no_lifecycle_or_admin_api(config: dict[str, Any]) -> None:
    command = config["services"]["prometheus"]["command"]
    assert flag(config["services"]["prometheus"], "config.file")
    for dangerous in ("--web.enable-lifecycle", "--web.enable-admin-api"):
        assert not any(arg.startswith(dangerous) for arg in command), dangerous


def test_every_image_is_pinned_to_a_version(config: dict[str, Any]) -> None:
    """MAJOR.MINOR.PATCH tags (optionally with a digest), the Dockerfile's base image too."""
    pinned = re.compile(r"[\w./-]+:v?\d+\.\d+\.\d+(-[\w.]+)?(@sha256:[0-9a-f]{64})?")
    images = [s["image"] for s in config["services"].values() if "image" in s]
    assert len(images) == 6
    for image in images:
        assert pinned.fullmatch(image), image
    (base,) = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert pinned.fullmatch(base), base


def test_redis_requires_its_password(config: dict[str, Any]) -> None:
    """requirepass is the secret, and every client's Redis URL (and the healthcheck) has it."""
    services = config["services"]
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]
    for name in ("worker", "exporter", "demo"):
        url = urlsplit(services[name]["environment"]["RETENTION_REDIS_URL"])
        assert (url.hostname, url.password) == ("redis", SECRETS["REDIS_PASSWORD"]), name


def test_cluster_nodes_require_the_password(cluster_config: dict[str, Any]) -> None:
    """On the cluster profile too: every node's requirepass (and masterauth) is the secret,
    the init and healthchecks log in with it, and the tracker's cluster URL carries it."""
    services = cluster_config["services"]
    secret = SECRETS["REDIS_PASSWORD"]
    for node in CLUSTER_NODES:
        command = services[node]["command"]
        args = dict(zip(command[1::2], command[2::2], strict=True))
        assert (args["--requirepass"], args["--masterauth"]) == (secret, secret), node
        assert services[node]["environment"]["REDISCLI_AUTH"] == secret, node
    assert services["redis-cluster-init"]["environment"]["REDISCLI_AUTH"] == secret
    for name in ("worker", "exporter", "demo"):
        url = services[name]["environment"]["RETENTION_REDIS_URL"]
        assert url.startswith(f"redis+cluster://:{secret}@redis-cluster-1:6379,"), name
