"""Servers of the tests' own: free loopback ports and a real Redis."""
from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.helpers.wait import until


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """Start a real redis-server on a loopback port; returns once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing (scripts/test.sh installs Debian's package)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"redis-server exited ({process.returncode}) on port {port}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        until(answers, timeout=10, message=f"redis-server did not start on port {port}")
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        client.close()
    return RedisServer(f"redis://127.0.0.1:{port}/0", port, process)
