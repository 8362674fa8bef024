# syntax=docker/dockerfile:1
# One image runs every service: `docker run IMAGE` is the API; `docker run IMAGE fetcher`,
# `projector`, `scheduler`, `migrate`, `sim --host 0.0.0.0`, `osrs-diff users list` the rest
# (deploy/docker/entrypoint.sh). Build from the repository root: `docker build -t osrs-diff .`
#
# The base is pinned to an exact tag; to pin the digest as well, resolve it once with
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm` and build with
# `--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>`.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, at the versions of constraints.txt, so that a change to the code alone
# reuses this layer.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY shared ./shared
COPY services ./services
COPY sim ./sim
# Not editable, no dev extra: the package lands in the venv's site-packages with its SQL
# migrations and the simulator's static files; the venv is all the final stage needs.
RUN /opt/venv/bin/pip install -c constraints.txt --no-deps . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 osrs \
 && useradd --system --uid 10001 --gid osrs --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin osrs
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/osrs-entrypoint
COPY --chmod=0644 deploy/docker/healthcheck.py /usr/local/lib/osrs-healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    OSRS_METRICS_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
# 8000: the API (its /metrics too); 8001: the hiscores simulator (`sim`); 9101, 9102, 9103: the
# metrics server of the fetcher, the projector and the scheduler (/metrics, /live, /ready).
EXPOSE 8000 8001 9101 9102 9103
# Liveness of whichever service the container runs: the API's /health/live, a worker's /live on
# its metrics port (deploy/docker/healthcheck.py). Kubernetes ignores HEALTHCHECK and uses the
# probes in deploy/k8s instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/osrs-healthcheck.py"]
ENTRYPOINT ["osrs-entrypoint"]
CMD ["api"]
