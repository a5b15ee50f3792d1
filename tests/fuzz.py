"""`make fuzz`: schemathesis against the OpenAPI document of a running backend.

    python -m tests.fuzz [--seconds N] [--max-examples N] [--base-url URL]

Without a base URL it serves Printz the way `make run` does (gunicorn through
`python -m printz.devstack`) on a free port, with a temporary instance folder
and embedded MongoDB and Redis of its own, and stops all of it at the end.
Every operation of /api/openapi.json is fuzzed as a signed-in customer (staff
for the staff-only route), see tests/support/fuzz_auth.py, until the time is
spent. The exit status is schemathesis's: non-zero on any failure, each shown
with the curl command that reproduces it.

tests/fuzz.toml says what is left out (POST /api/chat, which needs a model
server) and how each check is set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from printz.config import SETTINGS, env_names
from printz.devstack import DevStack, free_port

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECONDS = 180
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30
HOOKS_MODULE = "tests.support.fuzz_auth"
STAFF_EMAIL_ENV = "PRINTZ_FUZZ_STAFF_EMAIL"
STAFF_PASSWORD_ENV = "PRINTZ_FUZZ_STAFF_PASSWORD"

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
)
# Exclusions and the settings of each check.
CONFIG_FILE = ROOT / "tests" / "fuzz.toml"


@dataclass
class Backend:
    url: str
    log_path: Path | None = None
    staff_email: str | None = None
    staff_password: str | None = None


@dataclass
class FuzzResult:
    returncode: int
    seconds: float
    output: str | None
    backend_log: Path | None

    @property
    def passed(self) -> bool:
        return self.returncode == 0


def backend_env(port: int, instance: Path, mongo_uri: str, redis_url: str) -> dict:
    """`make run`'s environment, with no setting inherited from the caller.

    A developer's SENTRY_DSN would collect the fuzzer's 500s and their
    OPENAI_API_KEY would be spent; instance/printz.cfg is not read either.
    """
    env = dict(os.environ)
    for setting in SETTINGS:
        for name in env_names(setting):
            env.pop(name, None)
    env.update(
        PRINTZ_ENV="development",
        PRINTZ_PORT=str(port),
        PRINTZ_INSTANCE_PATH=str(instance),
        PRINTZ_MONGO_URI=mongo_uri,
        PRINTZ_REDIS_URL=redis_url,
        PRINTZ_WORKERS="2",
        PRINTZ_THREADS="8",
    )
    return env


def wait_until_serving(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the backend exited with {process.returncode}; see {log_path}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the backend was not ready within {START_TIMEOUT_S}s")


def create_staff(env: dict) -> tuple[str, str]:
    """A staff account made with `flask printz create-staff`, as an operator would."""
    email = f"fuzz-staff-{uuid.uuid4().hex[:8]}@example.com"
    password = uuid.uuid4().hex
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "printz"]
    made = subprocess.run(
        [*flask, "create-staff", email, "--name", "Fuzz staff"],
        cwd=ROOT,
        env=env,
        input=f"{password}\n{password}\n",
        text=True,
        capture_output=True,
        timeout=60,
    )
    if made.returncode != 0:
        raise RuntimeError(f"create-staff failed: {made.stdout}{made.stderr}")
    return email, password


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as Ctrl-C on `make run`; a kill if it does not end in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def served_backend(instance: Path, log_path: Path) -> Iterator[Backend]:
    """Printz served as by `make run`, on services of its own; all stopped after."""
    with DevStack(instance) as stack:
        port = free_port()
        env = backend_env(port, instance, stack.mongo_uri, stack.redis_url)
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "printz.devstack"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_serving(url, process, log_path)
            email, password = create_staff(env)
            yield Backend(url, log_path, email, password)
        finally:
            stop(process)


def schemathesis_command(
    base_url: str, seconds: int, max_examples: int | None, seed: int | None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG_FILE),
        "run",
        base_url.rstrip("/") + "/api/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-time",
        str(seconds),
    ]
    if max_examples is not None:
        command += ["--max-examples", str(max_examples)]
    if seed is not None:
        command += ["--seed", str(seed)]
    return command


def run_schemathesis(
    backend: Backend,
    seconds: int,
    max_examples: int | None = None,
    seed: int | None = None,
    workdir: Path | None = None,
    capture: bool = False,
) -> FuzzResult:
    """Fuzz the backend; with `capture` the report is returned, not printed."""
    env = dict(os.environ)
    env.update(
        SCHEMATHESIS_HOOKS=HOOKS_MODULE,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if backend.staff_email and backend.staff_password:
        env[STAFF_EMAIL_ENV] = backend.staff_email
        env[STAFF_PASSWORD_ENV] = backend.staff_password
    if capture:
        env.update(NO_COLOR="1", COLUMNS="100")

    started = time.monotonic()
    # schemathesis keeps its example database and crash files (for `st
    # replay`) in the working directory.
    completed = subprocess.run(
        schemathesis_command(backend.url, seconds, max_examples, seed),
        cwd=workdir or ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        # The run is bounded by --max-time; this only catches a hung one.
        timeout=seconds + 300,
    )
    return FuzzResult(
        completed.returncode,
        time.monotonic() - started,
        completed.stdout,
        backend.log_path,
    )


def fuzz(
    seconds: int = DEFAULT_SECONDS,
    max_examples: int | None = None,
    base_url: str | None = None,
    seed: int | None = None,
    workdir: Path | None = None,
    capture: bool = False,
) -> FuzzResult:
    """Fuzz the backend at `base_url`, or one served for the run."""
    if base_url:
        return run_schemathesis(
            Backend(base_url), seconds, max_examples, seed, workdir, capture
        )
    with contextlib.ExitStack() as cleanup:
        instance = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        workdir = workdir or instance
        backend = cleanup.enter_context(
            served_backend(instance, workdir / "backend.log")
        )
        return run_schemathesis(backend, seconds, max_examples, seed, workdir, capture)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument(
        "--seconds",
        type=int,
        default=DEFAULT_SECONDS,
        help=f"time budget of the fuzzing itself (default {DEFAULT_SECONDS})",
    )
    parser.add_argument(
        "--max-examples", type=int, help="test cases per operation and phase"
    )
    parser.add_argument(
        "--base-url", help="fuzz this running backend instead of serving one"
    )
    parser.add_argument("--seed", type=int, help="repeat the run of this seed")
    args = parser.parse_args(argv)

    # Kept between runs: schemathesis tries the examples that failed before
    # first, and `st replay` finds its crash files here.
    workdir = ROOT / "instance" / "fuzz"
    workdir.mkdir(parents=True, exist_ok=True)
    result = fuzz(args.seconds, args.max_examples, args.base_url, args.seed, workdir)

    verdict = "no failures" if result.passed else "FAILURES (see above)"
    print(f"\nfuzzing: {verdict}, {result.seconds:.0f}s of schemathesis")
    if not result.passed and not args.base_url:
        print(
            "The backend it ran against is stopped. Replay a curl command on "
            "`make run` (its port, and the cookie of an account signed up "
            "there), or repeat the run with --seed and the seed above. Server "
            f"tracebacks are in {result.backend_log}."
        )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
