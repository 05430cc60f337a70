# One image for the worker, the exporter and the simulated feed; the command picks the role
# (docker-compose.yml). Exporter metrics on 8000, worker health metrics on 8001.
FROM python:3.11.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The locked dependencies first (each file checked against its pinned SHA-256), so the
# layer is reused until the lock changes; then the project itself, with nothing more.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY core core
COPY retention retention
COPY streams streams
COPY metrics metrics
COPY scripts scripts
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check
USER nobody
EXPOSE 8000 8001
ENTRYPOINT ["retention"]
CMD ["--help"]
