"""Run the Vercel AI SDK (the real `ai` npm package) as the client of a stream.

`check_ui_stream()` runs `tests/js/ui_stream.mjs`, which feeds a UI message
stream (SSE, protocol v1) through the package's own chat client, the one
`useChat` wraps, and answers with one JSON object: see that script's header.
`ensure_ai_sdk()` installs the pinned packages (`ai` 7, `ai5`, `ai6`) from
`tests/js/package-lock.json` first when needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "ui_stream.mjs"
AI_PACKAGES = ("ai", "ai5", "ai6")

_STAMP_NAME = ".printz-install-stamp"
_LOCK_NAME = ".npm-install.lock"
_INSTALL_TIMEOUT = 900
_ready = False


class AiSdkUnavailableError(RuntimeError):
    """Node, npm or the `ai` packages could not be made ready."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AiSdkUnavailableError(
            f"`{name}` is not on PATH: the AI SDK contract tests need Node.js 20+ "
            f"and npm (Debian: apt-get install nodejs npm)"
        )
    return path


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = JS_DIR / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def _installed() -> bool:
    """node_modules is there and was installed from the current lockfile.

    The stamp holds a digest of package.json and package-lock.json, so a
    lockfile that changed after the install (newer than node_modules) makes
    it stale, whatever the files' mtimes after a checkout.
    """
    modules = JS_DIR / "node_modules"
    stamp = modules / _STAMP_NAME
    if not stamp.is_file() or stamp.read_text().strip() != _lock_digest():
        return False
    return all((modules / pkg / "package.json").is_file() for pkg in AI_PACKAGES)


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # One install at a time across pytest processes (xdist workers, parallel
    # runs): the second one waits, then finds node_modules ready.
    with open(JS_DIR / _LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_ai_sdk() -> None:
    """Install tests/js's packages when node_modules is missing or stale.

    Runs `npm ci` (or `npm install` when there is no lockfile) under a file
    lock. Raises AiSdkUnavailableError when node or npm is missing or the
    install fails.
    """
    global _ready
    if _ready:
        return
    _tool("node")
    npm = _tool("npm")
    if not _installed():
        with _install_lock():
            if not _installed():
                _npm_install(npm)
    _ready = True


def _npm_install(npm: str) -> None:
    has_lock = (JS_DIR / "package-lock.json").exists()
    command = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
    env = {**os.environ, "npm_config_update_notifier": "false"}
    try:
        done = subprocess.run(
            command,
            cwd=JS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AiSdkUnavailableError(
            f"`{' '.join(command)}` in {JS_DIR} took over {_INSTALL_TIMEOUT}s"
        ) from exc
    if done.returncode != 0:
        raise AiSdkUnavailableError(
            f"`{' '.join(command)}` in {JS_DIR} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    (JS_DIR / "node_modules" / _STAMP_NAME).write_text(_lock_digest() + "\n")


def check_ui_stream(
    *,
    url: str | None = None,
    body: Any = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    file: str | os.PathLike[str] | None = None,
    ai: str = "ai",
    abort_after_chunks: int | None = None,
    timeout: float = 60,
    data: bytes | str | None = None,
    text: str | None = None,
    chat_id: str | None = None,
) -> dict[str, Any]:
    """Check a UI message stream with the `ai` package and return its verdict.

    Give `url` (POSTed with `body`, JSON-encoded unless already a str, and
    `headers`, e.g. a Cookie), or `file`, or `data` (the stream's bytes, sent
    on stdin). Without `body` the request body is the one useChat sends for
    one user message `text`. `ai` picks the package: "ai" (v7), "ai5", "ai6".
    `abort_after_chunks` presses the stop button after that many chunks.

    Returns the script's JSON: ok, status, headers, chunks, message, error,
    error_name, stream_error, aborted, chat_status, finish_reason, ai.
    """
    if ai not in AI_PACKAGES:
        raise ValueError(f"ai must be one of {AI_PACKAGES}, not {ai!r}")
    sources = [x is not None for x in (url, file, data)]
    if sum(sources) != 1:
        raise ValueError("give exactly one of url, file or data")
    ensure_ai_sdk()

    args = [_tool("node"), str(SCRIPT), "--ai", ai]
    if url is not None:
        args += ["--url", url]
        if body is not None:
            args += ["--body", body if isinstance(body, str) else json.dumps(body)]
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        for name, value in items:
            args += ["--header", f"{name}: {value}"]
        if text is not None:
            args += ["--text", text]
        if chat_id is not None:
            args += ["--chat-id", chat_id]
    elif body is not None or headers or text is not None or chat_id is not None:
        raise ValueError("body, headers, text and chat_id need url")
    if file is not None:
        args += ["--file", os.path.abspath(file)]
    if abort_after_chunks is not None:
        args += ["--abort-after-chunks", str(abort_after_chunks)]

    stdin = data.encode() if isinstance(data, str) else data
    try:
        done = subprocess.run(
            args,
            cwd=JS_DIR,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"ui_stream.mjs did not finish within {timeout}s: {args[2:]}"
        ) from exc
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    if done.returncode == 2:
        raise ValueError(f"ui_stream.mjs usage error: {stderr.strip()}")
    if done.returncode != 0:
        raise RuntimeError(
            f"ui_stream.mjs exited {done.returncode}:\n{stdout}\n{stderr}"
        )
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"ui_stream.mjs printed no JSON:\n{stdout}\n{stderr}"
        ) from exc
