"""/healthz says whether the session store answers: with SESSION_TYPE=redis and a real Redis, 200
while it answers, 503 with JSON naming the session store as unreachable (no traceback) once it is
stopped, and 200 again once it is back, without restarting the app."""
from __future__ import annotations

import logging

import requests

from tests.helpers.flow import sign_in
from tests.helpers.servers import start_redis

OK = {"status": "ok"}  # the session store answered (views.healthz)
UNREACHABLE = {"status": "unavailable", "detail": "the session store is not reachable"}


def test_healthz_follows_the_redis_session_store(start_app, local_org, redis_server, tmp_path,
                                                 caplog):
    caplog.set_level(logging.INFO)
    running = start_app(local_org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"  # a session cookie too
    answer = http.get(f"{running.url}/healthz")
    assert answer.status_code == 200 and answer.json() == OK

    redis_server.stop()
    restarted = None
    try:
        for client in (http, requests.Session()):  # with the session's cookie, and without
            answer = client.get(f"{running.url}/healthz")
            assert answer.status_code == 503, answer.text
            assert answer.headers["Content-Type"] == "application/json"
            assert answer.json() == UNREACHABLE
            assert "Traceback" not in answer.text
        app_records = [record for record in caplog.records if record.name.startswith("sfconnect")]
        assert any("health check failed: ConnectionError" in record.getMessage()
                   for record in app_records)
        assert not any(record.exc_info for record in app_records)  # logged in a line, no trace

        restarted = start_redis(tmp_path / "redis-again", port=redis_server.port)
        answer = http.get(f"{running.url}/healthz")  # the app reconnects by itself
        assert answer.status_code == 200 and answer.json() == OK
    finally:
        if restarted is not None:
            restarted.stop()


def test_healthz_on_the_file_store(start_app, local_org):
    answer = requests.get(start_app(local_org).url + "/healthz")
    assert answer.status_code == 200 and answer.json() == OK
