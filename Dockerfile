# One image family for every service (api, worker, beat, flower):
#   target dev  - all dependencies incl. test tools; compose bind-mounts the source for reload
#   target prod - runtime only, code copied and byte-compiled, non-root, read-only friendly
ARG PYTHON_IMAGE=python:3.13-slim

# ---- build stages: uv (hashed pin in requirements/build.txt) puts the hashed pins into /opt/venv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
COPY requirements/build.txt /tmp/build.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install --require-hashes --no-deps -r /tmp/build.txt \
 && python -m venv --without-pip /opt/venv

FROM builder AS deps-prod
COPY requirements/prod.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --require-hashes --no-deps -r /tmp/requirements.txt

FROM builder AS deps-dev
COPY requirements/dev.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --require-hashes --no-deps -r /tmp/requirements.txt

# ---- shared runtime base ----
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1
WORKDIR /app
# Beat's schedule and Flower's state live here; compose mounts named volumes over these dirs,
# which inherit this ownership, so the non-root user can write them.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app app \
 && mkdir -p /var/lib/celery/beat /var/lib/celery/flower \
 && chown -R app:app /var/lib/celery
STOPSIGNAL SIGTERM

# ---- dev: source comes from a bind mount; runs as root so host-owned files are readable ----
FROM runtime AS dev
COPY --from=deps-dev /opt/venv /opt/venv
COPY internal ./internal
COPY pkg ./pkg
COPY services ./services
ENTRYPOINT ["python", "services/run_api.py"]

# ---- prod: runtime deps only, code byte-compiled, non-root, in a flattened image ----
# The base image's files a runtime never uses (docs, man pages, translations, the system pip)
# are deleted here and the result is copied into an empty image: deleting files in a later
# layer of the base would not make the image any smaller.
FROM runtime AS prod-rootfs
RUN rm -rf /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale /usr/share/lintian \
      /usr/share/python-wheels /usr/lib/python3/dist-packages \
      /usr/lib/python3*/ensurepip /usr/lib/python3*/test /usr/lib/python3*/pydoc_data \
      /usr/local/lib/python3*/ensurepip /usr/local/lib/python3*/test \
      /usr/local/lib/python3*/site-packages/pip* \
      /var/cache/debconf/* /var/cache/apt/* /var/lib/apt/lists/*
COPY --from=deps-prod /opt/venv /opt/venv

FROM scratch AS prod
COPY --from=prod-rootfs / /
# An empty image starts with no configuration: the runtime stage's, again.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1
WORKDIR /app
# Code last: a code-only change rebuilds only these layers.
COPY --chown=root:root internal ./internal
COPY --chown=root:root pkg ./pkg
COPY --chown=root:root services ./services
RUN python -m compileall -q /app
USER app
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "services/run_api.py"]
