"""The release name Sentry groups events under."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.cache
def release_name() -> str:
    """``printz@<version>``, plus ``+<commit>`` when the checkout's commit is known."""
    try:
        version = metadata.version("printz")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    commit = _git_commit()
    return f"printz@{version}+{commit}" if commit else f"printz@{version}"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
