"""The text of every config file the stack writes, from its settings (no I/O but templates).

Kafka's and Redis's configs are written here in full; Prometheus's and Alertmanager's
start from the repo's own files, so that the local stack runs what docker-compose ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from retention.stack import secure_redis
from retention.stack.certs import Certificates
from retention.stack.settings import CLUSTER_NODES, REPO_ROOT, StackError, StackSettings

PROMETHEUS_TEMPLATE = REPO_ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "prometheus" / "alertmanager.yml"
# The compose service that receives Alertmanager's webhook; locally it becomes
# RETENTION_ALERTMANAGER_WEBHOOK_URL.
COMPOSE_WEBHOOK_URL = "http://alert-log:5001/alerts"
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


@dataclass(frozen=True)
class SecureListener:
    """What the SASL_SSL listener needs: the server's PKCS12 keystore, the CA that signs
    client certificates, and the stack user's password (for PLAIN; SCRAM users live in
    the metadata log, see retention/stack/scram.py)."""

    keystore: Path
    keystore_password: str
    ca: Path
    user: str
    password: str


def kafka_properties(stack: StackSettings, secure: SecureListener) -> str:
    """A single node that is broker and controller at once (KRaft, no ZooKeeper).

    Every replication factor and min ISR is 1: otherwise the internal topics
    (__consumer_offsets, transactions, share groups) can never be created and consumer
    groups hang in FindCoordinator. Clients use the PLAINTEXT listener, or the SASL_SSL
    one to connect as production clients do.
    """
    controller = f"127.0.0.1:{stack.kafka_controller_port}"
    broker = f"127.0.0.1:{stack.kafka_port}"
    sasl_ssl = f"127.0.0.1:{stack.kafka_sasl_ssl_port}"
    return f"""\
# written by retention/stack on every start: edits are overwritten
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{controller}
listeners=PLAINTEXT://{broker},CONTROLLER://{controller},SASL_SSL://{sasl_ssl}
advertised.listeners=PLAINTEXT://{broker},SASL_SSL://{sasl_ssl}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs={stack.service_dir("kafka") / "data"}
{_sasl_ssl_listener(secure)}
num.partitions=4
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# a new consumer group would otherwise wait 3 s for more members before the first rebalance
group.initial.rebalance.delay.ms=0

# small footprint for a test box
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
"""


def _sasl_ssl_listener(secure: SecureListener) -> str:
    """TLS with the stack's certificate; a client certificate is checked against the CA
    when one is sent. SCRAM users are kept by the broker; PLAIN checks the one user
    listed here; OAUTHBEARER takes unsigned tokens (Kafka's unsecured validator: a local
    stand-in for an identity provider, so clients' token handling can be tested)."""
    name = "listener.name.sasl_ssl"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    oauth = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
    return f"""\
{name}.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
{name}.scram-sha-512.sasl.jaas.config={scram}
{name}.scram-sha-256.sasl.jaas.config={scram}
{name}.plain.sasl.jaas.config={plain} user_{secure.user}="{secure.password}";
{name}.oauthbearer.sasl.jaas.config={oauth} unsecuredLoginStringClaim_sub="broker";
{name}.ssl.keystore.type=PKCS12
{name}.ssl.keystore.location={secure.keystore}
{name}.ssl.keystore.password={secure.keystore_password}
{name}.ssl.key.password={secure.keystore_password}
{name}.ssl.truststore.type=PEM
{name}.ssl.truststore.location={secure.ca}
{name}.ssl.client.auth=requested
"""


def kafka_log4j2(stack: StackSettings) -> str:
    """Kafka 4 logs through log4j2: to a file under the state directory."""
    return f"""\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {stack.log_file("kafka")}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka-request.name = kafka.request.logger
logger.kafka-request.level = WARN
logger.state-change.name = state.change.logger
logger.state-change.level = WARN
"""


def kafka_log4j(stack: StackSettings) -> str:
    """Kafka 3 logs through log4j 1 (reload4j): the same file and levels."""
    return f"""\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={stack.log_file("kafka")}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def redis_conf(stack: StackSettings) -> str:
    """Durable and never evicting, as docker-compose.yml's Redis (tests/test_compose.py)."""
    return _redis_server_conf(stack.redis_port, stack.service_dir("redis"))


def redis_secure_conf(stack: StackSettings, tls: Certificates, password: str) -> str:
    """The standalone server's config on the secured Redis's port, plus its ACL user and
    TLS port (retention/stack/secure_redis.py)."""
    port, where = stack.redis_secure_port, stack.service_dir(secure_redis.SERVICE)
    return f"{_redis_server_conf(port, where)}{secure_redis.conf_lines(stack, tls, password)}"


def redis_cluster_conf(stack: StackSettings, node: int) -> str:
    """One master of the stack's Redis Cluster (index into CLUSTER_NODES): the standalone
    server's durability, plus cluster mode with its state in nodes.conf beside the data."""
    port, bus = stack.redis_cluster_ports[node], stack.redis_cluster_bus_ports[node]
    where = stack.service_dir(CLUSTER_NODES[node])
    return f"""\
{_redis_server_conf(port, where)}
cluster-enabled yes
cluster-port {bus}
# the node's own view of the cluster, rewritten by Redis itself; a node restarted on it
# rejoins its cluster without `redis-cli --cluster create`
cluster-config-file nodes.conf
cluster-node-timeout 5000
"""


def sentinel_conf(stack: StackSettings) -> str:
    """A Sentinel watching the standalone Redis as one service. One sentinel is a quorum of
    one: enough to name the primary to clients, not a high-availability setup."""
    where = stack.service_dir("redis-sentinel")
    service = stack.redis_sentinel_service
    return f"""\
# written by retention/stack on every start; Sentinel itself appends what it learns
port {stack.redis_sentinel_port}
bind 127.0.0.1
protected-mode yes
daemonize no
dir {where}
logfile ""
sentinel monitor {service} 127.0.0.1 {stack.redis_port} 1
sentinel down-after-milliseconds {service} 5000
sentinel failover-timeout {service} 60000
"""


def _redis_server_conf(port: int, where: Path) -> str:
    return f"""\
# written by retention/stack on every start
port {port}
bind 127.0.0.1
protected-mode yes
# in the foreground, so that the pid the stack records is the server's own
daemonize no
pidfile {where / "redis-server.pid"}
# Redis changes into this directory, and the stack recognises its process by its working
# directory: keep it the service directory. The append-only files go to appendonlydir/.
dir {where}
logfile ""
# Every write is appended to the AOF and fsynced once a second: a crash loses at most
# the last second, a stop or restart nothing. The AOF rewrite keeps an RDB preamble, so
# there are no separate RDB snapshots.
save ""
appendonly yes
appendfsync everysec
# When full, refuse writes (the worker retries) rather than evict customer state.
maxmemory-policy noeviction
# Customers live many to a hash, each one binary value (streams/customer.lua): keep
# those buckets compact listpacks. RETENTION_CUSTOMER_BUCKETS is sized for at most 512
# customers per bucket; a value over the limit (a customer with years of day bitmaps)
# would turn its whole bucket into a hashtable of ~2.5x the memory, so allow large ones.
hash-max-listpack-entries 512
hash-max-listpack-value 2048
"""


def directives(conf: str) -> dict[str, str]:
    """A redis.conf's directives as name -> value (comments and blank lines skipped)."""
    pairs = [line.split(None, 1) for line in conf.splitlines()]
    return {p[0]: p[1].strip('"') for p in pairs if p and not p[0].startswith("#")}


def render(template: str, stack: StackSettings) -> str:
    """Replace each ${RETENTION_NAME} outside comments with that setting's value; any other
    placeholder is an error."""

    def value(match: re.Match[str]) -> str:
        name = match[1].removeprefix("RETENTION_").lower()
        if not match[1].startswith("RETENTION_") or name not in type(stack).model_fields:
            raise StackError(f"{match[0]} names no RETENTION_* setting of the stack")
        return str(getattr(stack, name))

    lines = template.splitlines(keepends=True)
    return "".join(s if s.lstrip().startswith("#") else PLACEHOLDER.sub(value, s) for s in lines)


def prometheus_yml(stack: StackSettings, template: Path = PROMETHEUS_TEMPLATE) -> str:
    return render(template.read_text(), stack)


def alertmanager_yml(stack: StackSettings, source: Path = ALERTMANAGER_CONFIG) -> str:
    """The compose config with its webhook pointed at RETENTION_ALERTMANAGER_WEBHOOK_URL."""
    text = source.read_text()
    if COMPOSE_WEBHOOK_URL not in text:
        raise StackError(f"{source} has no {COMPOSE_WEBHOOK_URL} webhook to point elsewhere")
    return text.replace(COMPOSE_WEBHOOK_URL, stack.alertmanager_webhook_url)
