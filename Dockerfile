# syntax=docker/dockerfile:1
# streamer: multi-stage build; dependencies are resolved before the source is copied
# so that editing code does not invalidate the dependency layer.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
# 1. Dependencies only (cache-friendly): a stub package lets pip resolve pyproject.toml.
COPY pyproject.toml README.md ./
RUN mkdir -p streamer && touch streamer/__init__.py \
 && pip wheel --wheel-dir /wheels '.[embedded]' \
 && rm -f /wheels/streamer-*.whl
# 2. The package itself.
COPY streamer ./streamer
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    STREAMER_METRICS__HOST=0.0.0.0
RUN groupadd --system --gid 10001 streamer \
 && useradd --system --uid 10001 --gid streamer --home-dir /home/streamer --create-home streamer
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links /wheels streamer[embedded] && rm -rf /wheels
COPY config.yaml /etc/streamer/config.yaml
USER 10001:10001
WORKDIR /home/streamer
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["streamer"]
CMD ["run", "--config", "/etc/streamer/config.yaml"]
