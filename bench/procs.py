"""CPU time and memory of a process tree, read from /proc.

Linux only, as the benchmarks are: the figures are the kernel's own accounting,
so they include every thread of a process (the Sentry transport, the model
stream readers) and cost nothing to read while the load runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class CPUSample:
    """CPU seconds used so far by a set of processes, and which they were."""

    seconds: float
    pids: frozenset[int]

    def since(self, earlier: CPUSample) -> float:
        return self.seconds - earlier.seconds


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces.
    return text[text.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid`` (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def cpu_seconds(pids: Iterable[int]) -> CPUSample:
    """User plus system CPU of ``pids``; a process gone meanwhile counts 0."""
    total_ticks = 0
    seen = set()
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # utime and stime are fields 14 and 15 of stat; fields[0] is field 3.
        total_ticks += int(fields[11]) + int(fields[12])
        seen.add(pid)
    return CPUSample(total_ticks / CLOCK_TICKS, frozenset(seen))


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size summed over ``pids``.

    Pages a forked worker still shares with the gunicorn master are counted
    once per process, so the sum overstates what the machine gives up; it is
    the figure an operator's process monitor shows, hence the one reported.
    """
    total = 0
    for pid in pids:
        try:
            resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * PAGE_SIZE
    return total
