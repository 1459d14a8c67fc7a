# sfconnect behind gunicorn, configured entirely by environment variables (see .env.example).
#
#   docker build -t sfconnect .                                   # Debian bookworm, PyPI
#   docker build --build-arg WHEELS=wheels -t sfconnect .         # no index: wheels/ in the context
#   podman build --build-arg BASE=localhost/sfconnect-base:bookworm ...   # a locally made base
#
# BASE must be Debian bookworm (python3 is Debian's 3.11). A base that already has python3,
# python3-venv and ca-certificates (the one scripts/image-check.sh makes with mmdebstrap) needs no
# apt repository during the build. WHEELS names a folder of the build context holding wheels for
# every line of requirements.txt (`pip download -r requirements.txt -d wheels`, for this image's
# Python and platform); then pip installs from it alone, with no index.
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS runtime
# Only what is missing: Debian's python3 (3.11) and the CA bundle for https to Salesforce.
RUN dpkg -s python3 ca-certificates >/dev/null 2>&1 || { \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 ca-certificates \
        && rm -rf /var/lib/apt/lists/*; }

# The virtual environment is built here and copied alone: the wheels and apt lists stay behind.
FROM runtime AS build
RUN dpkg -s python3-venv >/dev/null 2>&1 || { \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; }
ARG WHEELS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# With WHEELS empty this copies requirements.txt alone (twice: no source may expand to nothing);
# with WHEELS=wheels, the wheels beside it.
COPY requirements.txt ${WHEELS:-requirements.txt} /tmp/wheels/
RUN python3 -m venv /opt/venv \
    && if [ -n "$WHEELS" ]; then \
           ls /tmp/wheels/*.whl >/dev/null \
           && /opt/venv/bin/pip install --no-index --find-links /tmp/wheels \
              -r /tmp/wheels/requirements.txt; \
       else \
           /opt/venv/bin/pip install -r /tmp/wheels/requirements.txt; \
       fi \
    && /opt/venv/bin/python -c "import flask, authlib, zeep, lxml, cryptography, redis, gunicorn"

FROM runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ENV=production \
    SESSION_FILE_DIR=/tmp/sfconnect-sessions \
    PORT=8000 \
    FORWARDED_ALLOW_IPS=""

COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/sfconnect
COPY app.py ./
COPY sfconnect/ sfconnect/
COPY config/ config/
COPY templates/ templates/
COPY static/ static/

RUN useradd --system --uid 10001 --home-dir /srv/sfconnect --shell /usr/sbin/nologin sfconnect
USER sfconnect

EXPOSE 8000
# Docker format only (podman build --format docker); compose files carry their own check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=4)"]
# FORWARDED_ALLOW_IPS="": gunicorn believes no X-Forwarded-Proto, not even from 127.0.0.1 (its
# default), as the app trusts no forwarded header (docs/security.md). The app needs none: its
# callback URL is SF_REDIRECT_URI, its redirects are relative, its cookies Secure by that URL.
# gunicorn listens on 0.0.0.0:$PORT (its own default when PORT is set); GUNICORN_CMD_ARGS can
# add to or replace these flags (e.g. "--bind 127.0.0.1:8080" when the container shares the host's
# network). Request lines up to 8 KB: the app puts at most 2,000 characters of SOQL in a URL.
# No control socket (gunicornc): nothing here uses it, and its default place, $HOME/.gunicorn, is
# not writable. The access log writes paths without query strings: the callback's `code` must not
# reach logs.
# Production needs SECRET_KEY, SF_CLIENT_ID, SF_CLIENT_SECRET and SF_REDIRECT_URI; with more than
# one instance, SESSION_TYPE=redis and REDIS_URL so that every instance sees every session.
CMD ["gunicorn", "--workers", "2", "--threads", "4", "--no-control-socket", \
     "--limit-request-line", "8190", "--access-logfile", "-", "--access-logformat", "%(h)s %(t)s \"%(m)s %(U)s\" %(s)s %(b)s %(M)sms", \
     "sfconnect:create_app()"]
