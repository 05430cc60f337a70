# One image for the worker and the exporter; the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY retention retention
COPY streams streams
COPY metrics metrics
COPY scripts scripts
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["retention"]
CMD ["--help"]
