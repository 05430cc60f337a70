"""The local service stack: Kafka (KRaft), Redis, Prometheus and Alertmanager on 127.0.0.1.

`python -m retention.stack up|down|restart|status|env|install`, normally through
`scripts/stack.sh`, which first installs the Debian packages and the Kafka jars. Modules:
`settings` (ports, paths, versions), `config` (the services' config files), `launch`
(how each service is prepared and started), `process` (pids, start, stop, lock),
`readiness` (when a service is usable) and `control` (the commands themselves).
"""
