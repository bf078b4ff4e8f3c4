# syntax=docker/dockerfile:1
#
# One image for every ViaRah process: `viarah web` (default), `viarah worker`,
# `viarah migrate`, and the operator commands (`docker compose run --rm web <command>`).
# No HEALTHCHECK here: the worker has no HTTP port; docker-compose.yml checks web.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: wheels and a virtualenv at /opt/viarah -------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/viarah
WORKDIR /build

# Dependencies first, in their own layer: a code-only change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p src/viarah && touch src/viarah/__init__.py \
    && /opt/viarah/bin/pip install . \
    && /opt/viarah/bin/pip uninstall -y viarah \
    && rm -rf src build

# The application, as a wheel (package data: migrations, static files).
COPY src ./src
RUN /opt/viarah/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/viarah/bin/pip install --no-deps /wheels/viarah-*.whl \
    && /opt/viarah/bin/pip uninstall -y pip

# --- runtime: the virtualenv, postgresql-client, a non-root user -------------------------
FROM ${PYTHON_IMAGE} AS runtime
# postgresql-client: pg_dump/pg_restore/psql for backups and restores.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 viarah \
    && useradd --system --uid 10001 --gid viarah --home-dir /app --shell /usr/sbin/nologin viarah
COPY --from=builder /opt/viarah /opt/viarah
WORKDIR /app
RUN mkdir -p /app/var && chown -R viarah:viarah /app
ENV PATH=/opt/viarah/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["viarah"]
CMD ["web", "--host", "0.0.0.0", "--port", "8000"]
