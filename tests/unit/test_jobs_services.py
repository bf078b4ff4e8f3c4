from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from tests.fakes import FakeClock, FakeJobQueue, FakeJobStore
from viarah.domain.jobs.model import MAX_ATTEMPTS, retry_delay
from viarah.domain.jobs.services import JobRunner, OutboxPurge, OutboxRelay
from viarah.domain.shared.errors import Unavailable


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore()


async def test_relay_sends_due_jobs_once(clock: FakeClock, store: FakeJobStore) -> None:
    queue = FakeJobQueue()
    relay = OutboxRelay(store, queue, clock)
    store.put("a", "noop", {}, clock.now())
    store.put("b", "noop", {}, clock.now())
    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0
    assert queue.sent == ["a", "b"]
    assert store.status("a") == "dispatched"


async def test_relay_keeps_jobs_while_broker_is_down_and_says_so_once(
    clock: FakeClock, store: FakeJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    queue = FakeJobQueue()
    queue.down = True
    relay = OutboxRelay(store, queue, clock)
    store.put("a", "noop", {}, clock.now())
    with caplog.at_level(logging.WARNING, logger="viarah.jobs"):
        for _ in range(3):
            assert await relay.relay_once() == 0
        assert relay.broker_down
        assert store.status("a") == "pending"
        queue.down = False
        assert await relay.relay_once() == 1
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert not relay.broker_down


async def test_relay_packs_jobs_into_messages_oldest_first(
    clock: FakeClock, store: FakeJobStore
) -> None:
    queue = FakeJobQueue()
    relay = OutboxRelay(store, queue, clock, jobs_per_message=3)
    for n in range(7):
        store.put(f"j{n}", "noop", {}, clock.now())
        clock.advance(seconds=1)
    assert await relay.relay_once() == 7
    assert queue.messages == [["j0", "j1", "j2"], ["j3", "j4", "j5"], ["j6"]]
    assert {store.status(f"j{n}") for n in range(7)} == {"dispatched"}


async def test_broker_lost_mid_pass_releases_what_was_not_sent(
    clock: FakeClock, store: FakeJobStore
) -> None:
    queue = FakeJobQueue()
    queue.fail_after = 1
    relay = OutboxRelay(store, queue, clock, jobs_per_message=2)
    for n in range(5):
        store.put(f"j{n}", "noop", {}, clock.now())
    assert await relay.relay_once() == 2
    assert relay.broker_down
    assert [store.status(f"j{n}") for n in range(5)] == ["dispatched"] * 2 + ["pending"] * 3
    queue.fail_after = None
    assert await relay.relay_once() == 3  # at once, not after the dispatch timeout
    assert queue.sent == [f"j{n}" for n in range(5)]


async def test_an_unexpected_send_error_releases_the_jobs_and_is_raised(
    clock: FakeClock, store: FakeJobStore
) -> None:
    class Broken(FakeJobQueue):
        def send(self, job_ids: Sequence[str]) -> None:
            raise RuntimeError("bug")

    relay = OutboxRelay(store, Broken(), clock)
    store.put("a", "noop", {}, clock.now())
    with pytest.raises(RuntimeError):
        await relay.relay_once()
    assert store.status("a") == "pending"


async def test_unacknowledged_dispatch_is_resent(clock: FakeClock, store: FakeJobStore) -> None:
    queue = FakeJobQueue()
    relay = OutboxRelay(store, queue, clock)
    store.put("a", "noop", {}, clock.now())
    await relay.relay_once()
    clock.advance(seconds=30)
    assert await relay.relay_once() == 0
    clock.advance(seconds=31)
    assert await relay.relay_once() == 1
    assert queue.sent == ["a", "a"]


async def test_runner_runs_a_job_exactly_once(clock: FakeClock, store: FakeJobStore) -> None:
    calls: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        calls.append(payload)

    runner = JobRunner(store, clock, {"greet": handler})
    store.put("a", "greet", {"name": "ada"}, clock.now())
    assert await runner.run("a")
    assert not await runner.run("a")  # a redelivered message is a no-op
    assert calls == [{"name": "ada"}]
    assert store.status("a") == "done"


async def test_failed_job_is_retried_with_backoff_then_given_up(
    clock: FakeClock, store: FakeJobStore
) -> None:
    async def broken(_payload: dict[str, Any]) -> None:
        raise Unavailable("GitLab is down")

    runner = JobRunner(store, clock, {"broken": broken})
    store.put("a", "broken", {}, clock.now())
    await runner.run("a")
    record = store.records["a"]
    assert record.status.value == "pending"
    assert record.attempts == 1
    assert record.available_at == clock.now() + retry_delay(1)
    assert store.errors["a"] == "GitLab is down"
    for _ in range(MAX_ATTEMPTS - 1):
        await runner.run("a")
    assert store.status("a") == "failed"
    assert store.records["a"].attempts == MAX_ATTEMPTS


async def test_a_job_that_fails_for_good_tells_its_owner_once(
    clock: FakeClock, store: FakeJobStore
) -> None:
    told: list[tuple[dict[str, Any], str]] = []

    async def broken(_payload: dict[str, Any]) -> None:
        raise Unavailable("GitLab is down")

    async def gave_up(payload: dict[str, Any], reason: str) -> None:
        told.append((payload, reason))

    runner = JobRunner(store, clock, {"broken": broken}, on_give_up={"broken": gave_up})
    store.put("a", "broken", {"delivery_id": "d-1"}, clock.now())
    for _ in range(MAX_ATTEMPTS - 1):
        await runner.run("a")
    assert told == []  # retries are not the end
    await runner.run("a")
    assert store.status("a") == "failed"
    assert told == [({"delivery_id": "d-1"}, "GitLab is down")]


async def test_a_failing_give_up_hook_is_logged_and_the_job_still_fails(
    clock: FakeClock, store: FakeJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_payload: dict[str, Any]) -> None:
        raise Unavailable("GitLab is down")

    async def hook(_payload: dict[str, Any], _reason: str) -> None:
        raise ConnectionError("database away")

    runner = JobRunner(store, clock, {"broken": broken}, on_give_up={"broken": hook})
    store.put("a", "broken", {}, clock.now())
    for _ in range(MAX_ATTEMPTS):
        await runner.run("a")
    assert store.status("a") == "failed"
    assert "job.give_up_hook_failed job=broken error=ConnectionError" in caplog.text


async def test_job_held_by_a_dead_worker_is_reclaimed(
    clock: FakeClock, store: FakeJobStore
) -> None:
    ran: list[str] = []

    async def handler(_payload: dict[str, Any]) -> None:
        ran.append("x")

    store.put("a", "h", {}, clock.now())
    await store.claim("a", clock.now(), clock.now().replace(minute=5))  # a worker took it and died
    runner = JobRunner(store, clock, {"h": handler})
    assert not await runner.run("a")
    clock.advance(minutes=10)
    assert await runner.run("a")
    assert ran == ["x"]


async def test_unknown_job_fails_without_retrying(clock: FakeClock, store: FakeJobStore) -> None:
    runner = JobRunner(store, clock, {})
    store.put("a", "mystery", {}, clock.now())
    await runner.run("a")
    assert store.status("a") == "failed"
    assert "mystery" in store.errors["a"]


def test_retry_delay_grows_and_is_capped() -> None:
    delays = [retry_delay(n).total_seconds() for n in range(1, 15)]
    assert delays == sorted(delays)
    assert delays[0] == 2
    assert max(delays) == 600


async def test_purge_deletes_day_old_done_jobs_in_batches_up_to_a_cap(
    clock: FakeClock, store: FakeJobStore
) -> None:
    for n in range(12):
        store.put(f"old{n}", "noop", {}, clock.now())
        await store.finish(f"old{n}", clock.now())
    store.put("failed", "noop", {}, clock.now())
    await store.give_up("failed", "boom", clock.now())
    store.put("waiting", "noop", {}, clock.now())
    clock.advance(hours=23)
    store.put("recent", "noop", {}, clock.now())
    await store.finish("recent", clock.now())
    clock.advance(hours=2)  # the old ones are now 25 h old, "recent" 2 h

    purge = OutboxPurge(store, clock, batch=5, max_per_run=10)
    assert await purge.purge() == 10  # two full batches, then the cap
    assert await purge.purge() == 2  # the rest on the next run
    assert await purge.purge() == 0
    assert sorted(store.records) == ["failed", "recent", "waiting"]
