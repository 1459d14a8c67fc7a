# sfconnect behind gunicorn, configured entirely by environment variables (see .env.example).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENV=production \
    SESSION_FILE_DIR=/tmp/sfconnect-sessions

WORKDIR /srv/sfconnect
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app.py ./
COPY sfconnect/ sfconnect/
COPY config/ config/
COPY templates/ templates/
COPY static/ static/

RUN useradd --system --uid 10001 --home-dir /srv/sfconnect sfconnect
USER sfconnect

EXPOSE 8000
# Request lines up to 8 KB: the app puts at most 2,000 characters of SOQL in a URL.
# The access log writes paths without query strings: the callback's `code` must not reach logs.
# Production needs SECRET_KEY, SF_CLIENT_ID, SF_CLIENT_SECRET and SF_REDIRECT_URI; with more than
# one instance, SESSION_TYPE=redis and REDIS_URL so that every instance sees every session.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", \
     "--limit-request-line", "8190", "--access-logfile", "-", "--access-logformat", "%(h)s %(t)s \"%(m)s %(U)s\" %(s)s %(b)s %(M)sms", \
     "sfconnect:create_app()"]
