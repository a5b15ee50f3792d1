"""`make run` end to end: the embedded stack and gunicorn, driven over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from printz.devstack import free_port
from tests.conftest import PASSWORD, new_email

ROOT = Path(__file__).resolve().parent.parent


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run exited early with {process.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"nothing served at {url} within {timeout}s")


@pytest.fixture
def running_backend(tmp_path):
    """`python -m printz.devstack` (what `make run` runs) on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "PRINTZ_PORT": str(port),
        "PRINTZ_INSTANCE_PATH": str(tmp_path),
        "PRINTZ_WORKERS": "2",
        "PRINTZ_THREADS": "4",
    }
    for name in ("PRINTZ_MONGO_URI", "PRINTZ_REDIS_URL", "MONGO_URI", "REDIS_URL"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "printz.devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield url, process, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_make_run_serves_accounts_over_http(running_backend):
    url, _, _ = running_backend
    email = new_email()

    with requests.Session() as browser:
        assert browser.get(url + "/readyz", timeout=10).status_code == 200
        signed_up = browser.post(
            url + "/api/auth/register",
            json={"email": email, "password": PASSWORD, "name": "Ada"},
            timeout=10,
        )
        assert signed_up.status_code == 201
        assert browser.get(url + "/api/auth/me", timeout=10).json()["email"] == email
        assert browser.post(url + "/api/auth/logout", timeout=10).status_code == 200
        assert browser.get(url + "/api/auth/me", timeout=10).status_code == 401
        signed_in = browser.post(
            url + "/api/auth/login",
            json={"email": email, "password": PASSWORD},
            timeout=10,
        )
        assert signed_in.status_code == 200
        assert signed_in.headers["X-Request-ID"]


def test_sigterm_stops_everything_make_run_started(running_backend):
    _, process, instance = running_backend
    assert processes_mentioning(str(instance)), "the embedded services should run"

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while processes_mentioning(str(instance)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(instance)) == []


def test_a_killed_make_run_leaves_no_server_behind(running_backend):
    url, process, _ = running_backend

    process.kill()
    process.wait()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/healthz", timeout=1)
        except requests.ConnectionError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} still answers after make run was killed")
