"""What the job runner and the outbox relay record through the Telemetry port."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeClock, FakeJobQueue, FakeJobStore
from tests.fakes.telemetry import RecordingTelemetry
from viarah.domain.jobs.model import MAX_ATTEMPTS
from viarah.domain.jobs.services import JobRunner, OutboxRelay
from viarah.domain.shared.errors import Unavailable
from viarah.domain.shared.telemetry import (
    JOB_SECONDS,
    JOBS,
    METRICS,
    OUTBOX_RELAYED,
    MetricKind,
    NullTelemetry,
    check,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore()


@pytest.fixture
def telemetry() -> RecordingTelemetry:
    return RecordingTelemetry()


async def ok(_payload: dict[str, Any]) -> None:
    return None


async def broken(_payload: dict[str, Any]) -> None:
    raise Unavailable("GitLab is down")


async def test_a_finished_job_counts_as_done_with_its_duration(
    clock: FakeClock, store: FakeJobStore, telemetry: RecordingTelemetry
) -> None:
    runner = JobRunner(store, clock, {"greet": ok}, telemetry=telemetry)
    store.put("a", "greet", {}, clock.now())

    assert await runner.run("a")
    assert not await runner.run("a")  # a redelivery runs nothing and counts nothing

    assert telemetry.counts == {(JOBS, (("job", "greet"), ("outcome", "done"))): 1}
    durations = telemetry.durations(JOB_SECONDS, job="greet")
    assert len(durations) == 1
    assert durations[0] >= 0


async def test_a_failing_job_counts_as_retry_then_failed(
    clock: FakeClock, store: FakeJobStore, telemetry: RecordingTelemetry
) -> None:
    runner = JobRunner(store, clock, {"broken": broken}, telemetry=telemetry)
    store.put("a", "broken", {}, clock.now())

    for _ in range(MAX_ATTEMPTS):
        assert await runner.run("a")

    assert store.status("a") == "failed"
    assert telemetry.total(JOBS, job="broken", outcome="retry") == MAX_ATTEMPTS - 1
    assert telemetry.total(JOBS, job="broken", outcome="failed") == 1
    assert telemetry.total(JOBS, outcome="done") == 0
    assert len(telemetry.durations(JOB_SECONDS, job="broken")) == MAX_ATTEMPTS


async def test_a_job_without_handler_counts_as_unknown(
    clock: FakeClock, store: FakeJobStore, telemetry: RecordingTelemetry
) -> None:
    runner = JobRunner(store, clock, {}, telemetry=telemetry)
    store.put("a", "mystery", {}, clock.now())

    await runner.run("a")

    assert telemetry.total(JOBS, job="mystery", outcome="unknown") == 1
    assert telemetry.durations(JOB_SECONDS) == []


async def test_the_relay_counts_the_jobs_it_hands_over(
    clock: FakeClock, store: FakeJobStore, telemetry: RecordingTelemetry
) -> None:
    queue = FakeJobQueue()
    relay = OutboxRelay(store, queue, clock, telemetry=telemetry)
    store.put("a", "noop", {}, clock.now())
    store.put("b", "noop", {}, clock.now())

    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0
    queue.down = True
    store.put("c", "noop", {}, clock.now())
    assert await relay.relay_once() == 0  # broker down: nothing relayed, nothing counted

    assert telemetry.total(OUTBOX_RELAYED) == 2


async def test_without_telemetry_nothing_is_recorded_and_nothing_breaks(
    clock: FakeClock, store: FakeJobStore
) -> None:
    runner = JobRunner(store, clock, {"greet": ok})  # NullTelemetry by default
    store.put("a", "greet", {}, clock.now())
    assert await runner.run("a")
    NullTelemetry().count(JOBS, job="greet", outcome="done")


def test_the_catalogue_refuses_undeclared_names_kinds_and_labels() -> None:
    with pytest.raises(ValueError, match="undeclared metric 'jobz'"):
        check("jobz", MetricKind.COUNTER, {})
    with pytest.raises(ValueError, match="is a counter"):
        check(JOBS, MetricKind.HISTOGRAM, {"job": "x", "outcome": "done"})
    with pytest.raises(ValueError, match="takes labels"):
        check(JOBS, MetricKind.COUNTER, {"job": "x"})
    assert check(JOBS, MetricKind.COUNTER, {"job": "x", "outcome": "done"}) is METRICS[JOBS]


def test_no_label_could_carry_an_id() -> None:
    """Labels come from fixed sets; none is named like something unbounded."""
    for metric in METRICS.values():
        for label in metric.labels:
            assert label not in {"id", "org_id", "task_id", "user_id", "path", "url", "host"}
