"""Scan ids shared through Redis: ``use_shared_metadata`` against a real ``redis-server``.

bluesky takes the next scan id as ``md["scan_id"] + 1`` and writes it back; with ``RE.md`` a
``RedisJSONDict`` those are a ``GET`` and a ``SET``, so two RunEngines opening runs together
take the same number. These tests pin that gap down and show the shared counter closes it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import default_scan_id_source
from ophyd_async.core import StandardReadable, StandardReadableFormat, init_devices, soft_signal_rw
from redis_json_dict import RedisJSONDict

from ophyd_servomex.catalog.errors import CatalogAccessError
from ophyd_servomex.catalog.shared_md import SharedMetadata, use_shared_metadata
from ophyd_servomex.codec.errors import ServomexValidationError


class _Probe(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.value = soft_signal_rw(float, 20.9, units="%")
        super().__init__(name=name)


@pytest.fixture
def redis_client(redis_server: Any) -> Any:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix per test: one Redis, no test sees another's metadata."""
    return f"test-{uuid.uuid4().hex[:12]}-"


def _run_engine(start_docs: list[dict[str, Any]]) -> RunEngine:
    RE = RunEngine({}, call_returns_result=False)
    RE.subscribe(lambda name, doc: start_docs.append(doc) if name == "start" else None)
    return RE


def test_plain_redis_json_dict_read_modify_write_hands_out_one_number_twice(
    redis_client: Any, prefix: str
) -> None:
    """The gap: two processes' default scan_id_source read before either writes back."""
    first = RedisJSONDict(redis_client, prefix=prefix)
    second = RedisJSONDict(redis_client, prefix=prefix)
    first["scan_id"] = 7
    a = default_scan_id_source(first)  # process A opens a run ...
    b = default_scan_id_source(second)  # ... and B does too before A writes back
    first["scan_id"] = a
    second["scan_id"] = b
    assert (a, b) == (8, 8)


def test_shared_counter_never_repeats_under_the_same_interleaving(
    redis_client: Any, prefix: str
) -> None:
    first = SharedMetadata(redis_client, prefix)
    second = SharedMetadata(redis_client, prefix)
    first["scan_id"] = 7
    a = first.next_scan_id(first)
    b = second.next_scan_id(second)
    # the write-backs arrive in the worst order: B's (higher) first, then A's (lower)
    second["scan_id"] = b
    first["scan_id"] = a
    assert (a, b) == (8, 9)
    assert first["scan_id"] == 8  # each process reads the number its own run took
    assert second["scan_id"] == 9
    assert first.shared_scan_id() == 9  # A's late write-back did not lower the counter
    assert SharedMetadata(redis_client, prefix).next_scan_id() == 10


def test_three_threads_take_distinct_consecutive_scan_ids(redis_client: Any, prefix: str) -> None:
    taken: list[list[int]] = [[], [], []]
    barrier = threading.Barrier(3)

    def take(into: list[int]) -> None:
        shared = SharedMetadata(redis_client, prefix)
        barrier.wait()
        for _ in range(200):
            value = shared.next_scan_id()
            shared["scan_id"] = value  # bluesky's write-back
            into.append(value)

    threads = [threading.Thread(target=take, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = sorted(v for into in taken for v in into)
    assert every == list(range(1, 601))
    for into in taken:
        assert into == sorted(into)


def test_run_engines_share_metadata_and_scan_ids(redis_client: Any, prefix: str) -> None:
    starts: list[dict[str, Any]] = []
    first = _run_engine(starts)
    second = _run_engine(starts)
    first.md["operator"] = "before sharing"  # kept: Redis has no operator yet
    shared_first = use_shared_metadata(first, redis_client, prefix)
    use_shared_metadata(second, redis_client, prefix)
    with init_devices():
        probe = _Probe()

    first(count([probe]))
    second(count([probe]))
    first(count([probe]))
    second.md["sample"] = "N2 purge"  # written by one process, seen by the other
    first(count([probe]))

    assert [doc["scan_id"] for doc in starts] == [1, 2, 3, 4]
    assert [doc["operator"] for doc in starts] == ["before sharing"] * 4
    assert "sample" not in starts[2]
    assert starts[3]["sample"] == "N2 purge"
    assert first.md["scan_id"] == 4
    assert second.md["scan_id"] == 2
    # versions stay per process, in the start documents and out of Redis
    assert starts[0]["versions"]["bluesky"] == starts[1]["versions"]["bluesky"]
    assert not redis_client.exists(f"{prefix}versions")
    assert set(SharedMetadata(redis_client, prefix)) == {"operator", "sample", "scan_id"}
    assert shared_first.shared_scan_id() == 4


def test_an_earlier_scan_id_only_raises_the_counter(redis_client: Any, prefix: str) -> None:
    """(Raising it to the catalog's highest: test_postgres, with a real server.)"""
    SharedMetadata(redis_client, prefix).raise_scan_id(30)
    RE = RunEngine({"scan_id": 41})
    shared = use_shared_metadata(RE, redis_client, prefix)
    assert shared.shared_scan_id() == 41
    assert RE.scan_id_source == shared.next_scan_id
    other = RunEngine({"scan_id": 3})  # behind: must not lower the shared counter
    use_shared_metadata(other, redis_client, prefix)
    assert shared.shared_scan_id() == 41
    assert other.md["scan_id"] == 41
    shared["scan_id"] = 5  # an assignment raises only ...
    assert shared.shared_scan_id() == 41
    shared.reset_scan_id(5)  # ... a reset lowers
    assert shared.shared_scan_id() == 5
    assert shared.next_scan_id() == 6


@pytest.mark.parametrize("value", [-1, 2.5, "7", True, None])
def test_a_scan_id_that_is_not_a_count_is_refused(
    redis_client: Any, prefix: str, value: object
) -> None:
    shared = SharedMetadata(redis_client, prefix)
    with pytest.raises(ServomexValidationError, match="a scan id is an integer >= 0"):
        shared["scan_id"] = value
    assert not redis_client.exists(f"{prefix}scan_id")


def test_unreachable_redis_names_it_without_the_password(free_tcp_port: int) -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{free_tcp_port}/0"
    with pytest.raises(CatalogAccessError) as caught:
        use_shared_metadata(RunEngine({}), url, "x-")
    text = str(caught.value)
    assert "hunter2secret" not in text
    assert f"127.0.0.1:{free_tcp_port}" in text


def test_no_redis_named_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPHYD_SERVOMEX_REDIS", raising=False)
    with pytest.raises(ServomexValidationError, match="OPHYD_SERVOMEX_REDIS"):
        use_shared_metadata(RunEngine({}))


@pytest.fixture
def free_tcp_port() -> int:
    from services import free_port

    return free_port()


def test_a_run_does_not_open_once_redis_is_gone(tmp_path: Any, redis_server: Any) -> None:
    """(``redis_server``: skips where redis-server is missing; this test stops its own.)"""
    import redis
    from services import RedisServer

    own = RedisServer(tmp_path / "redis")
    try:
        starts: list[dict[str, Any]] = []
        RE = _run_engine(starts)
        use_shared_metadata(RE, own.url, "gone-")
        with init_devices():
            probe = _Probe()
        RE(count([probe]))
    finally:
        own.stop()
    with pytest.raises(redis.ConnectionError):
        RE(count([probe]))
    assert [doc["scan_id"] for doc in starts] == [1]  # no second run, no guessed number
