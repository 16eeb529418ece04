# Tradehall image: the whole platform by default (tradehall up), or any one system by command.
# Build: docker build -t tradehall:local .   (see docs/containers.md and docs/platform.md)
#
# Two stages on the same pinned base (tag and multi-architecture index digest; update both together):
#   builder  installs the hash-locked dependencies, then the package, into /opt/venv
#   runtime  copies only that venv and runs as an unprivileged user
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The venv lives at the same path in both stages: its scripts carry absolute shebangs.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build

# Dependencies first, so source edits do not invalidate this layer. Every file pip fetches must
# match a hash in the lock; --only-binary keeps the build free of compilers and sdist scripts.
COPY requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.lock

# A C compiler for the package's optional native engine core (docs/exchange-performance.md):
# only this stage has it; the runtime stage copies the built venv, not the compiler. The image's
# Python headers are already under /usr/local/include.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# The package itself. Its build backend (hatchling) is already in the venv from the lock, so no
# unpinned build requirement is fetched (--no-build-isolation) and nothing else is resolved. The
# build hook (hatch_build.py, with scripts/build_native.py) compiles the native core into it;
# TRADEHALL_REQUIRE_NATIVE makes a failed compile fail the image instead of shipping the slower
# pure-Python engine, and the last check proves the installed engine runs the native build.
COPY pyproject.toml README.md hatch_build.py ./
COPY scripts/build_native.py ./scripts/
COPY src ./src
RUN TRADEHALL_REQUIRE_NATIVE=1 pip install --no-deps --no-build-isolation . \
    && tradehall --version \
    && cd / && python -c "from tradehall.core.clock import SystemClock; from tradehall.core.ids import RandomIds; from tradehall.exchange.engine import Engine; assert Engine(SystemClock(), RandomIds()).build == 'native'"


FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
ARG APP_GID=10001

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADEHALL_DATA_DIR=/data

RUN groupadd --gid "${APP_GID}" tradehall \
    && useradd --uid "${APP_UID}" --gid tradehall --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tradehall \
    && mkdir -p /data \
    && chown tradehall:tradehall /data

COPY --from=builder /opt/venv /opt/venv

# A named volume mounted here starts out with this directory's owner (the tradehall user).
VOLUME ["/data"]
WORKDIR /data

USER tradehall:tradehall

# Exchange (REST, console), Gateway (/ws data bus), Tap (app and API).
EXPOSE 8080 8085 8090

# Liveness via the exchange's GET /healthz; any failure or non-2xx answer exits non-zero. Under
# `tradehall up` the supervisor restarts a crashed system and exits (non-zero) if one keeps
# crashing, so the exchange answering is a fair liveness signal for the whole container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

# SIGTERM (docker stop): `tradehall up` stops bots, tap, gateway, then the exchange (which takes
# its graceful shutdown of contract section 8), each within --stop-grace, and exits 0.
# `docker run ... tradehall:local tradehall exchange --host 0.0.0.0` runs the exchange alone.
STOPSIGNAL SIGTERM
CMD ["tradehall", "up", "--host", "0.0.0.0"]
