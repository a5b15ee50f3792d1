"""The embedded services start, answer, keep or drop data, and never outlive us."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pymongo
import pytest
import redis

from printz.devstack import (
    ChildService,
    DevStack,
    DevStackError,
    free_port,
    start_mongo,
    start_redis,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process checks read /proc"
)


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def wait_until_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait for every pid to end; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if is_running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def mongo_client(url: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)


@pytest.fixture
def services():
    """Services a test starts; stopped afterwards even if the test fails."""
    started: list[ChildService] = []
    yield started
    for service in reversed(started):
        service.stop()


def test_free_port_can_be_bound():
    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_mongo_in_memory_stores_documents(services):
    mongo = start_mongo(None)
    services.append(mongo)

    assert mongo.url.endswith("/?directConnection=true")
    with mongo_client(mongo.url) as client:
        client.printz.orders.insert_one({"number": "P-1"})
        assert client.printz.orders.count_documents({"number": "P-1"}) == 1


def test_mongo_keeps_data_in_its_data_dir_across_restarts(services, tmp_path):
    data_dir = tmp_path / "mongo-data"
    first = start_mongo(data_dir)
    services.append(first)
    with mongo_client(first.url) as client:
        client.printz.orders.insert_one({"number": "P-2"})
    first.stop()

    second = start_mongo(data_dir)
    services.append(second)

    with mongo_client(second.url) as client:
        assert client.printz.orders.find_one({"number": "P-2"}) is not None
    assert any(data_dir.iterdir())


def test_mongo_in_memory_forgets_data_on_restart(services):
    first = start_mongo(None)
    services.append(first)
    with mongo_client(first.url) as client:
        client.printz.orders.insert_one({"number": "P-3"})
    first.stop()

    second = start_mongo(None)
    services.append(second)

    with mongo_client(second.url) as client:
        assert client.printz.orders.count_documents({}) == 0


def test_redis_without_data_dir_never_snapshots(services):
    service = start_redis(None)
    services.append(service)
    client = redis.Redis.from_url(service.url)

    client.set("quote", "12.50")

    assert client.get("quote") == b"12.50"
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    client.close()


def test_redis_with_data_dir_keeps_data_across_restarts(services, tmp_path):
    data_dir = tmp_path / "redis-data"
    first = start_redis(data_dir)
    services.append(first)
    client = redis.Redis.from_url(first.url)
    client.set("quote", "12.50")
    client.close()
    first.stop()

    second = start_redis(data_dir)
    services.append(second)
    client = redis.Redis.from_url(second.url)

    assert (data_dir / "dump.rdb").is_file()
    assert client.get("quote") == b"12.50"
    client.close()


def test_stop_reaps_the_process_and_can_be_repeated(services):
    service = start_redis(None)
    services.append(service)

    service.stop()
    service.stop()

    assert service.process.returncode is not None
    assert not is_running(service.pid)


def test_stop_kills_a_process_that_ignores_sigterm():
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        process_group=0,
    )
    process.stdout.readline()
    service = ChildService("stubborn", process, "none://")

    service.stop(timeout=0.5)

    assert process.returncode == -signal.SIGKILL
    process.stdout.close()


def test_start_failure_reports_the_service_log(tmp_path):
    occupied = start_redis(None)
    try:
        port = int(occupied.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(DevStackError) as failure:
            start_redis(None, port=port, log_path=tmp_path / "redis.log")
    finally:
        occupied.stop()

    assert "redis exited" in str(failure.value)
    assert "Address already in use" in str(failure.value)


def test_devstack_starts_both_under_the_instance_dir(tmp_path):
    with DevStack(tmp_path) as stack:
        with mongo_client(stack.mongo_uri) as client:
            client.printz.orders.insert_one({"number": "P-4"})
        redis.Redis.from_url(stack.redis_url).set("quote", "1")
        pids = [service.pid for service in stack.services]

    assert (tmp_path / "mongo-data").is_dir()
    assert (tmp_path / "redis-data" / "dump.rdb").is_file()
    assert wait_until_gone(pids, timeout=1) == []


def test_devstack_only_starts_services_without_a_url(tmp_path):
    given = "mongodb://mongo.example:27017/"

    with DevStack(tmp_path, mongo_uri=given) as stack:
        assert stack.mongo_uri == given
        assert [service.name for service in stack.services] == ["redis"]
        assert redis.Redis.from_url(stack.redis_url).ping()

    assert not (tmp_path / "mongo-data").exists()


PARENT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from printz.devstack import DevStack

    stack = DevStack(sys.argv[1]).start()
    pids = [service.pid for service in stack.services]
    print(json.dumps(pids), flush=True)
    time.sleep(120)
    """
)


def test_children_die_when_the_parent_is_killed_hard(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path)],
        cwd=REPO_ROOT,
        # A hard-killed parent cannot remove its scratch dirs; keep them here.
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    child_pids: list[int] = []
    try:
        child_pids = json.loads(parent.stdout.readline())
        assert len(child_pids) == 2
        assert all(is_running(pid) for pid in child_pids)

        parent.kill()
        parent.wait()

        assert wait_until_gone(child_pids, timeout=10) == []
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        for pid in filter(is_running, child_pids):
            os.kill(pid, signal.SIGKILL)
