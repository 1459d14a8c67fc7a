#!/usr/bin/env bash
# Build the container image and run it for real (not part of CI; takes a few minutes; as root).
#
#   scripts/image-check.sh
#
# 1. Installs podman, runc, mmdebstrap, redis-server and haproxy when missing (apt-get).
# 2. Makes a Debian bookworm base with mmdebstrap (python3, python3-venv, ca-certificates) and
#    `podman import`s it as $IMAGE_CHECK_BASE (kept for the next run; IMAGE_CHECK_REBUILD_BASE=1
#    makes it again).
# 3. Downloads the wheels of requirements.txt with the host's pip, for the base's Python and glibc,
#    then builds the Dockerfile with no network at all (--build-arg WHEELS=wheels), from the
#    working tree's files as git sees them (tracked, or untracked and not ignored).
# 4. Checks the image: non-root, no secrets or tests in it, a production start without
#    SECRET_KEY refuses.
# 5. Starts on loopback: Redis, the local org (python -m devorg --admin, with a client app
#    registered for the check), two app containers sharing Redis (ENV=production,
#    SESSION_TYPE=redis) and HAProxy with deploy/haproxy.cfg in front of them.
# 6. Checks /healthz and the image's HEALTHCHECK, signs in through the load balancer and the
#    org's login and consent pages (a scripted browser: requests with one cookie jar), queries
#    on each instance and through the load balancer, logs out on the other instance with a form
#    of the first (with an X-Forwarded-Proto header the image must ignore), and checks that the
#    access logs hold no authorization code and that HAProxy used both instances.
# Exit 0 only when every check passed. Containers, processes and temporary files are removed on
# exit (IMAGE_CHECK_KEEP=1 keeps the temporary folder, with the logs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

BASE_IMAGE=${IMAGE_CHECK_BASE:-localhost/sfconnect-base:bookworm}
IMAGE=${IMAGE_CHECK_IMAGE:-localhost/sfconnect:image-check}
MIRROR=${IMAGE_CHECK_MIRROR:-http://deb.debian.org/debian}
# runc here cannot raise the open-files and processes limits past the host's: set them explicitly.
RUN=(podman run --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
# The image's HEALTHCHECK without podman's systemd timer (no systemd here): run by hand below.
RUN_APP=("${RUN[@]}" --health-interval=disable)
STARTED=$(date +%s)
WORK=$(mktemp -d /tmp/sfconnect-image-check.XXXXXX)
CONTAINERS=()
PIDS=()

step() { printf '\n== %s  [%ss]\n' "$*" "$(($(date +%s) - STARTED))"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$? name pid
  set +e
  for name in "${CONTAINERS[@]}"; do
    if [ "$rc" -ne 0 ]; then
      echo "--- last lines of container $name:" >&2
      podman logs --tail 25 "$name" >&2 2>&1
    fi
    podman rm -f -t 3 "$name" >/dev/null 2>&1
  done
  if [ "$rc" -ne 0 ] && [ -s "$WORK/org.log" ]; then
    echo "--- last lines of the local org:" >&2
    tail -n 15 "$WORK/org.log" >&2
  fi
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [ "${IMAGE_CHECK_KEEP:-}" = 1 ]; then echo "kept: $WORK"; else rm -rf "$WORK"; fi
  local took=$(($(date +%s) - STARTED))
  if [ "$rc" -eq 0 ]; then
    printf '\nimage-check: PASSED in %dm%02ds (image %s)\n' $((took / 60)) $((took % 60)) "$IMAGE"
  else
    printf '\nimage-check: FAILED (exit %d) after %dm%02ds\n' "$rc" $((took / 60)) $((took % 60)) >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_health() {  # URL, seconds
  local deadline=$(($(date +%s) + $2))
  until "$PY" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
  do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 1
  done
}

step "tools"
missing=()
for pair in podman:podman runc:runc mmdebstrap:mmdebstrap redis-server:redis-server \
    haproxy:haproxy; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || fail "missing ${missing[*]}: run as root, or apt-get install them"
  echo "   installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ "$(id -u)" -eq 0 ] || fail "podman build and run here need root"
PY=$REPO/.venv/bin/python
if ! "$PY" -c 'import flask, authlib, requests' 2>/dev/null; then
  scripts/setup.sh requirements.txt
fi
ok "$(podman --version), $(runc --version | head -n 1), $("$PY" --version) for the local org"

step "base image $BASE_IMAGE"
old_base=""
if [ "${IMAGE_CHECK_REBUILD_BASE:-}" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
  old_base=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)
  echo "   mmdebstrap bookworm from $MIRROR ..."
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm - "$MIRROR" | podman import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  ok "made with mmdebstrap and imported"
else
  ok "present (IMAGE_CHECK_REBUILD_BASE=1 makes it again)"
fi
read -r PY_VERSION GLIBC ARCH < <("${RUN[@]}" --rm --network=none "$BASE_IMAGE" python3 -c \
  'import platform; print(platform.python_version(), platform.libc_ver()[1], platform.machine())')
[ -n "${ARCH:-}" ] || fail "cannot run Python in $BASE_IMAGE"
ok "Python $PY_VERSION, glibc $GLIBC, $ARCH"

step "wheels for Python $PY_VERSION on manylinux $ARCH (the host's pip)"
mkdir -p "$WORK/context/wheels"
platforms=()
for minor in $(seq "${GLIBC#2.}" -1 17); do platforms+=(--platform "manylinux_2_${minor}_$ARCH"); done
platforms+=(--platform "manylinux2014_$ARCH" --platform "manylinux2010_$ARCH" --platform "manylinux1_$ARCH")
download() {
  "$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp "${platforms[@]}" \
    -d "$WORK/context/wheels" "$@" >"$WORK/pip.log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$WORK/pip.log" >&2; fail "pip download $*"; }
}
download -r requirements.txt
# pip takes --python-version for python_version markers but the host's for python_full_version
# ones (redis: async-timeout on Python < 3.11.3): ask the base's own pip, offline, what is
# missing, and fetch that, until nothing is.
for _ in 1 2 3 4 5; do
  wanted=$("${RUN[@]}" --rm --network=none -v "$WORK/context/wheels:/wheels:ro" \
    -v "$REPO/requirements.txt:/requirements.txt:ro" "$BASE_IMAGE" sh -c \
    'python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --disable-pip-version-check --dry-run \
       --no-index --find-links /wheels -r /requirements.txt 2>&1' \
    | sed -n 's/^ERROR: No matching distribution found for \([^;]*\).*/\1/p' || true)
  [ -n "$wanted" ] || break
  echo "   also: $wanted"
  mapfile -t wanted_list <<<"$wanted"
  download "${wanted_list[@]}"
done
[ -z "$wanted" ] || fail "wheels still missing for the image: $wanted"
ok "$(find "$WORK/context/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$WORK/context/wheels" | cut -f1)"

step "podman build (no network; BASE=$BASE_IMAGE, WHEELS=wheels)"
# The build context: the working tree's files that git would see (tracked or not ignored), as
# they are now, plus the wheels; the Dockerfile's .dockerignore applies on top.
git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$WORK/context" -xf -
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# No cached layers (--layers=false), so each run leaves one image, not a trail of stages.
if ! podman build --runtime runc --network=none --format docker --pull=never --force-rm \
    --layers=false \
    --build-arg BASE="$BASE_IMAGE" --build-arg WHEELS=wheels \
    -t "$IMAGE" "$WORK/context" >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log" >&2
  fail "podman build"
fi
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true  # the last run's image, untagged now
fi
[ -z "$old_base" ] || podman rmi "$old_base" >/dev/null 2>&1 || true  # the base made before
ok "built $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}')"

step "image contents"
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = sfconnect ] || fail "the image runs as '$user', not sfconnect"
# shellcheck disable=SC2016 # $(ls ...) runs in the container
inside=$("${RUN_APP[@]}" --rm --network=none "$IMAGE" 2>/dev/null sh -c \
  'id -u; echo $(ls -A /srv/sfconnect); find /srv/sfconnect /tmp \( -name ".env*" -o -name "*.pem" \
     -o -name "*.key" -o -name .git -o -name tests -o -name devorg -o -name "*.whl" \) -print')
echo "$inside" | sed -n '1,2s/^/   /p'
[ "$(echo "$inside" | sed -n 1p)" = 10001 ] || fail "the container's user id is not 10001"
[ -z "$(echo "$inside" | sed -n '3,$p')" ] \
  || fail "the image holds files it must not: $(echo "$inside" | sed -n '3,$p' | tr '\n' ' ')"
ok "non-root (uid 10001); no .env, key, .git, tests or devorg in the image"
if refused=$("${RUN_APP[@]}" --rm --network=none -e SF_CLIENT_ID=x -e SF_CLIENT_SECRET=y "$IMAGE" \
    python3 -c 'import sfconnect; sfconnect.create_app()' 2>&1); then
  fail "a production start without SECRET_KEY did not refuse"
fi
echo "$refused" | grep -q "SECRET_KEY" || fail "the refusal does not name SECRET_KEY: $refused"
ok "a production start without SECRET_KEY refuses: $(echo "$refused" | grep SECRET_KEY | tail -n 1 | cut -c1-90)"

step "Redis and the local org on loopback"
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
"$PY" -m devorg --host 127.0.0.1 --port 0 --admin >"$WORK/org.log" 2>&1 &
PIDS+=($!)
ORG=""
for _ in $(seq 1 60); do
  ORG=$(sed -n 's/^Local Salesforce org listening on \(http[^ ]*\)$/\1/p' "$WORK/org.log")
  [ -n "$ORG" ] && break
  sleep 0.5
done
[ -n "$ORG" ] || fail "the local org did not start"
wait_for_health "$ORG/.well-known/openid-configuration" 20 || fail "the local org does not answer"
ok "Redis on 127.0.0.1:$REDIS_PORT, the local org at $ORG"
PORT_A=$(free_port)
PORT_B=$(free_port)
LB_PORT=$(free_port)
REDIRECT_URI="http://127.0.0.1:$LB_PORT/oauth/callback"
# A client app of the org for this check only, its callback behind the load balancer.
read -r CLIENT_ID CLIENT_SECRET < <("$PY" - "$ORG" "$REDIRECT_URI" <<'EOF'
import sys, requests
body = {"name": "sfconnect (image check)", "redirect_uris": [sys.argv[2]]}
answer = requests.post(f"{sys.argv[1]}/__admin/clients", json=body, timeout=10)
answer.raise_for_status()
print(answer.json()["client_id"], answer.json()["client_secret"])
EOF
)
[ -n "${CLIENT_SECRET:-}" ] || fail "could not register a client app with the local org"
ok "client app $CLIENT_ID registered, callback $REDIRECT_URI"

step "two app containers (ENV=production, SESSION_TYPE=redis, read-only, host network)"
# Production over plain http is allowed for loopback only (settings: SF_LOGIN_URL and
# SF_REDIRECT_URI); cookies are Secure only when SF_REDIRECT_URI is https.
umask 077
cat >"$WORK/app.env" <<EOF
ENV=production
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
SF_LOGIN_URL=$ORG
SF_LOGIN_HOSTS=
SF_CLIENT_ID=$CLIENT_ID
SF_CLIENT_SECRET=$CLIENT_SECRET
SF_REDIRECT_URI=$REDIRECT_URI
SESSION_TYPE=redis
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
EOF
for port in "$PORT_A" "$PORT_B"; do
  name=sfconnect-image-check-$$-$port
  "${RUN_APP[@]}" -d --name "$name" --network=host --read-only --tmpfs /tmp \
    --env-file "$WORK/app.env" \
    -e PORT="$port" -e GUNICORN_CMD_ARGS="--bind 127.0.0.1:$port" "$IMAGE" </dev/null >/dev/null \
    2> >(grep -v 'unable to get systemd connection' >&2)
  CONTAINERS+=("$name")
done
for port in "$PORT_A" "$PORT_B"; do
  wait_for_health "http://127.0.0.1:$port/healthz" 60 || fail "/healthz on port $port"
  ok "/healthz 200 on 127.0.0.1:$port"
done
for name in "${CONTAINERS[@]}"; do
  podman healthcheck run "$name" >/dev/null || fail "the image's HEALTHCHECK in $name"
done
ok "the image's own HEALTHCHECK passes in both containers"

step "HAProxy with deploy/haproxy.cfg, its servers the two containers"
# The deployment's own configuration, with loopback addresses for the compose services' names.
sed -e "s/^    bind :8080\$/    bind 127.0.0.1:$LB_PORT/" -e '/^    server app[0-9] /d' \
  -e 's/ resolvers containers$//' -e '/^resolvers containers$/,/^$/d' deploy/haproxy.cfg \
  >"$WORK/haproxy.cfg"
printf '    server app1 127.0.0.1:%s\n    server app2 127.0.0.1:%s\n' "$PORT_A" "$PORT_B" \
  >>"$WORK/haproxy.cfg"
haproxy -q -c -f "$WORK/haproxy.cfg" || fail "haproxy -c on the derived configuration"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_for_health "http://127.0.0.1:$LB_PORT/healthz" 30 || fail "/healthz through HAProxy"
ok "/healthz 200 through HAProxy on 127.0.0.1:$LB_PORT (round robin, option httpchk GET /healthz)"

step "sign in through the load balancer, query and log out on either instance"
"$PY" - "http://127.0.0.1:$LB_PORT" "http://127.0.0.1:$PORT_A" "http://127.0.0.1:$PORT_B" \
  "$ORG" <<'EOF'
"""A scripted browser: the web server flow through the org's pages, then SOQL, then log out."""
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

entry, app_a, app_b, org = sys.argv[1:5]
browser = requests.Session()  # one cookie jar, as one browser: cookies ignore the port


class Forms(HTMLParser):
    """Each form's action and its named fields (hidden inputs, and the submit buttons)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "fields": {}, "buttons": {}})
        elif self.forms and tag in ("input", "button") and attrs.get("name"):
            kind = "buttons" if tag == "button" else "fields"
            self.forms[-1][kind][attrs["name"]] = attrs.get("value") or ""


def form_of(response: requests.Response, has_field: str) -> dict:
    for form in Forms(response.text).forms:
        if has_field in form["fields"] or has_field in form["buttons"]:
            return form
    raise SystemExit(f"FAIL: no form with {has_field!r} at {response.url}")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"FAIL: {what}")
    print(f"   ok: {what}")


answer = browser.get(f"{entry}/login", allow_redirects=False, timeout=15)
authorize = answer.headers.get("Location", "")
params = parse_qs(urlsplit(authorize).query)
check(answer.status_code == 302 and authorize.startswith(f"{org}/services/oauth2/authorize")
      and params.get("code_challenge_method") == ["S256"] and "state" in params,
      "GET /login redirects to the org's authorize URL with state and PKCE (S256)")

login_page = browser.get(authorize, timeout=15)
form = form_of(login_page, "username")
fields = {**form["fields"], "username": "admin@devorg.local", "password": "Welcome1!"}
answer = browser.post(urljoin(login_page.url, form["action"]), data=fields, timeout=15)
check(answer.status_code == 200 and "Allow Access?" in answer.text,
      "the org's login page signs admin@devorg.local in, and asks for consent")

form = form_of(answer, "action")
answer = browser.post(urljoin(answer.url, form["action"]),
                      data={**form["fields"], "action": "allow"}, allow_redirects=False, timeout=15)
callback = answer.headers.get("Location", "")
check(answer.status_code == 302 and callback.startswith(f"{entry}/oauth/callback?")
      and "code=" in callback, "Allow sends the browser back to the app's callback with a code")

answer = browser.get(callback, allow_redirects=False, timeout=30)
check(answer.status_code == 302, f"the callback exchanges the code (302 to {answer.headers.get('Location')})")
home = browser.get(f"{app_a}/", timeout=30)
check(home.status_code == 200 and "admin@devorg.local" in home.text,
      "the first instance's home page shows the signed-in user")
home_b = browser.get(f"{app_b}/", timeout=30)
check(home_b.status_code == 200 and "admin@devorg.local" in home_b.text,
      "so does the second instance's: the session lives in Redis")

soql = "SELECT Id, Name, Account.Name FROM Contact ORDER BY Name LIMIT 5"
exported = browser.get(f"{app_b}/export.json", params={"q": soql}, timeout=60)
records = exported.json().get("records", []) if exported.ok else []
check(exported.status_code == 200 and len(records) == 5
      and all(r["attributes"]["type"] == "Contact" for r in records),
      f"the second instance exports the query's 5 Contacts (first: {records[0]['Name'] if records else None})")
for number in (1, 2):
    page = browser.get(f"{entry}/query", params={"q": soql}, timeout=60)
    check(page.status_code == 200 and all(r["Name"] in page.text for r in records)
          and records[0]["Account"]["Name"] in page.text,
          f"the results page through the load balancer ({number} of 2) shows every record, "
          "with Account.Name")

form = next((f for f in Forms(home.text).forms if f["action"].endswith("/logout")), None)
check(form is not None, "the first instance's page has the logout form")
# As a load balancer in front would add it, from loopback: the image must not take it for https
# (Flask-WTF would then demand a Referer, which the app's no-referrer policy never lets come).
answer = browser.post(f"{app_b}/logout", data=form["fields"], allow_redirects=False, timeout=30,
                      headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"})
check(answer.status_code in (302, 303), "the second instance accepts that form's CSRF token and "
      "logs out (X-Forwarded-Proto: https from loopback ignored)")
for app in (app_a, entry):
    after = browser.get(f"{app}/query", params={"q": soql}, allow_redirects=False, timeout=30)
    check(after.status_code in (302, 303), f"after logout {app} no longer queries (redirect)")
EOF
callbacks=0
for name in "${CONTAINERS[@]}"; do
  podman logs "$name" >"$WORK/$name.log" 2>&1
  callbacks=$((callbacks + $(grep -c '/oauth/callback' "$WORK/$name.log" || true)))
  if grep -q 'code=' "$WORK/$name.log"; then fail "container $name logged an authorization code"; fi
  if grep -E '\[(ERROR|CRITICAL)\]|Traceback' "$WORK/$name.log"; then fail "errors in $name's log"; fi
done
[ "$callbacks" -ge 1 ] || fail "no access-log line for the callback"
grep -q '"GET /oauth/callback HTTP' "$WORK/haproxy.log" || fail "no HAProxy log line for the callback"
if grep -q 'code=' "$WORK/haproxy.log"; then fail "HAProxy logged an authorization code"; fi
ok "the apps' and HAProxy's logs show the callback without its code or state"
for server in app1 app2; do
  grep -q "sfconnect/$server .*\"GET /query" "$WORK/haproxy.log" \
    || fail "HAProxy sent no query to $server (round robin)"
done
ok "HAProxy spread the requests over both instances: $(grep -c 'sfconnect/app1 ' \
  "$WORK/haproxy.log") to app1, $(grep -c 'sfconnect/app2 ' "$WORK/haproxy.log") to app2"
