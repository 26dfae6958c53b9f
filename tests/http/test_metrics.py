"""``/metrics`` (issue 17): taskbus's metrics in the Prometheus text format, gathered over the
bus from real actors (broker, encrypted store, scheduler, executors), parsed with
``prometheus_client``'s own parser; counters and histograms move when runs happen, a source that
does not answer is left out of a scrape, and only admins may read them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from actors.health import assess
from bus import Envelope
from config import load_settings, topics
from taskbus.client import TaskbusClient
from taskbus.embedding import Taskbus
from taskbus.http.metrics import MetricsGatherer
from taskbus.http.metrics_events import EventMetrics, gate_of
from taskbus.http.metrics_scrape import bus_families, health_families
from tests.bus.waits import eventually
from tests.e2e import system as e2e
from tests.http.conftest import HttpTaskbus
from tests.tasks import gates

pytestmark = pytest.mark.timeout(120)

WORK = "tests.e2e.dependency_tasks:Work"  # works `seconds`, then succeeds, or fails if `fail`
GATED = "tests.tasks.gates:Gated"  # holds until the test opens the gate
DEADLINE_S = 30.0
LIVENESS_S = 0.2  # how often actors report their numbers (health passes them on)


class Scraped:
    """One scrape, parsed by prometheus_client's parser: ``value(sample name, **labels)``."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in self.families.values()
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def count(self, name: str, **labels: str) -> float:
        return self.value(name, **labels) or 0.0


async def scrape(gatherer: MetricsGatherer) -> Scraped:
    return Scraped((await gatherer.scrape()).decode())


@dataclass
class System:
    taskbus: Taskbus
    client: TaskbusClient  # the admin "app", over inproc
    gatherer: MetricsGatherer


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    """A whole taskbus in this loop, its actors reporting every LIVENESS_S, and a started
    gatherer through the admin client."""
    gates.GATES = gates.Gates()  # a fresh gate per test
    settings = load_settings(
        environ={"TASKBUS_HOME": str(tmp_path / "home")},
        overrides={
            "scheduler.task_modules": ["tests.e2e.dependency_tasks", "tests.tasks.gates"],
            "resources.max_cpu_percent": 100,
            "resources.max_memory_percent": 100,
            "actors.liveness_interval_s": LIVENESS_S,
        },
    )
    taskbus = Taskbus(settings, endpoints=())
    await taskbus.start()
    try:
        client = await taskbus.client("app")
        gatherer = MetricsGatherer(client)
        await gatherer.start()
        try:
            yield System(taskbus, client, gatherer)
        finally:
            await gatherer.close()
    finally:
        await asyncio.wait_for(taskbus.stop(), DEADLINE_S)


# ------------------------------------------------------------------ on a real system


async def test_a_scrape_parses_and_its_counters_move_when_runs_happen(system: System) -> None:
    client, gatherer = system.client, system.gatherer
    before = await scrape(gatherer)
    assert before.value("taskbus_runs_total", state="succeeded", category="user") is None
    await client.create("user.ok", WORK, "@yearly", config={"seconds": 0.0})
    await client.create(
        "user.bad",
        WORK,
        "@yearly",
        config={"seconds": 0.0, "fail": True},
        retry_policy={"max_attempts": 2, "base_delay_s": 0.0},
    )
    await client.trigger("user.ok")
    await client.trigger("user.bad")

    def counted(name: str, **labels: str) -> float:
        return gatherer.registry.get_sample_value(name, labels) or 0.0

    await eventually(
        lambda: (
            counted("taskbus_dead_letters_total", category="user") == 1
            and counted("taskbus_runs_total", state="succeeded", category="user") == 1
        ),
        "the good run's success and the bad run's dead letter counted",
        DEADLINE_S,
    )
    after = await scrape(gatherer)

    user = {"category": "user"}
    assert after.count("taskbus_runs_total", state="queued", **user) == 3  # 1 + 2 attempts
    assert after.count("taskbus_runs_total", state="started", **user) == 3
    assert after.count("taskbus_runs_total", state="failed", **user) == 2
    assert after.count("taskbus_retries_total", **user) == 1
    # the two triggered first attempts are timed from due to start; the retry is not
    assert after.count("taskbus_firing_lateness_seconds_count", trigger="trigger", **user) == 2
    assert after.count("taskbus_run_duration_seconds_count", outcome="succeeded", **user) == 1
    assert after.count("taskbus_run_duration_seconds_count", outcome="failed", **user) == 2
    assert after.families["taskbus_firing_lateness_seconds"].type == "histogram"
    # asked at scrape time: the leader's counters, the tasks, the lease, the broker's queues
    fires = "taskbus_scheduler_events_total"
    assert after.count(fires, event="fires") >= before.count(fires, event="fires") + 3
    assert after.count("taskbus_tasks") >= 2
    holder = after.families["taskbus_lease_holder"].samples
    assert [s.labels["holder"].split("@")[0] for s in holder] == ["scheduler"]
    dispatch = {"queue": topics.DISPATCH_QUEUES + "user", **user}
    assert after.count("taskbus_queue_delivered_total", **dispatch) == 3
    published = "taskbus_bus_messages_total"
    assert after.count(published, kind="published") > before.count(published, kind="published")
    for source in ("scheduler", "health", "bus"):
        assert after.value("taskbus_up", source=source) == 1
        assert after.value("taskbus_scrape_errors_total", source=source) == 0
    assert after.value("taskbus_actor_up", actor="executor-user") == 1

    # the store's group commits, as it reports them in its liveness
    async def committed_more() -> bool:
        now = await scrape(gatherer)
        name = "taskbus_store_commit_seconds_count"
        return now.count(name, actor="store") > before.count(name, actor="store")

    await eventually(committed_more, "the store's commits counted", DEADLINE_S)


async def test_a_running_run_is_in_flight_and_a_held_fire_is_counted_at_its_gate(
    system: System,
) -> None:
    client, gatherer = system.client, system.gatherer
    await client.create("user.gated", GATED, "@yearly", run_policy={"overlap": "buffer_one"})
    await client.trigger("user.gated")
    await gates.GATES.until(lambda: len(gates.GATES.running) == 1, DEADLINE_S)
    await client.trigger("user.gated")  # held by the overlap rule while the first runs

    user = {"category": "user"}

    async def held_and_running() -> bool:
        now = await scrape(gatherer)
        return (
            now.count("taskbus_deferrals_total", gate="overlap", **user) == 1
            and now.count("taskbus_executor_runs_in_progress", actor="executor-user") == 1
            and now.count("taskbus_queue_in_flight", queue=topics.DISPATCH_QUEUES + "user", **user)
            == 1
        )

    await eventually(held_and_running, "the run in flight, the second fire held", DEADLINE_S)
    gates.GATES.opened.set()

    async def both_ran() -> bool:
        now = await scrape(gatherer)
        return (
            now.count("taskbus_run_duration_seconds_count", outcome="succeeded", **user) == 2
            and now.count("taskbus_executor_runs_in_progress", actor="executor-user") == 0
        )

    await eventually(both_ran, "both runs ended, nothing in progress", DEADLINE_S)


async def test_a_source_that_does_not_answer_is_left_out_of_the_scrape(tmp_path: Path) -> None:
    """Without a scheduler nothing answers ``scheduler.stats``; then one that never replies:
    either way the scrape answers, that source left out and counted, the others whole."""
    settings = load_settings(environ={"TASKBUS_HOME": str(tmp_path / "home")})
    async with Taskbus(dataclasses.replace(settings, enabled=False), endpoints=()) as taskbus:
        gatherer = MetricsGatherer(await taskbus.client("app"), ask_timeout_s=0.5)
        nobody = await scrape(gatherer)
        assert nobody.value("taskbus_up", source="scheduler") == 0
        assert nobody.value("taskbus_scrape_errors_total", source="scheduler") == 1
        assert "taskbus_tasks" not in nobody.families
        assert nobody.value("taskbus_up", source="health") == 1
        assert nobody.value("taskbus_up", source="bus") == 1
        assert nobody.value("taskbus_actor_up", actor="store") == 1

        silent = await taskbus.system.client("scheduler")  # serves the topic, never replies
        requests = await silent.serve(topics.SCHEDULER_STATS)
        hung = await scrape(gatherer)
        await requests.get(timeout=DEADLINE_S)  # it was asked; the scrape did not wait for it
        assert hung.value("taskbus_up", source="scheduler") == 0
        assert hung.value("taskbus_scrape_errors_total", source="scheduler") == 2
        assert hung.value("taskbus_up", source="bus") == 1


# ------------------------------------------------------------------ over HTTP


async def test_get_metrics_parses_and_moves_when_a_run_happens(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    admin = http_taskbus.auth("cli")
    first = await api.get("/metrics", headers=admin)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("text/plain")
    assert Scraped(first.text).value("taskbus_up", source="bus") == 1

    await http_taskbus.client.create("user.fails", "tests.http.http_tasks:Fails", "@yearly")
    await http_taskbus.client.trigger("user.fails")

    async def failed() -> bool:
        reply = await api.get("/metrics", headers=admin)
        return Scraped(reply.text).count("taskbus_runs_total", state="failed", category="user") == 1

    await eventually(failed, "the failed run counted on /metrics", DEADLINE_S)


async def test_get_metrics_is_for_admins_only(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    anonymous = await api.get("/metrics")
    assert anonymous.status_code == 401, anonymous.text
    alice = await api.get("/metrics", headers=http_taskbus.auth("alice"))
    assert alice.status_code == 403, alice.text
    assert alice.json()["code"] == "denied"
    assert "'alice' may not read the metrics" in alice.json()["reason"]


# ------------------------------------------------------------------ actors in another process


async def test_metrics_of_actors_in_another_process(tmp_path: Path) -> None:
    """``taskbus up`` as a child process; the gatherer connects over tcp+CURVE as ``cli``: the
    run's events, the executor's and the store's numbers all come over the bus."""
    env = e2e.environment(tmp_path / "home", TASKBUS_ACTORS__LIVENESS_INTERVAL_S=str(LIVENESS_S))
    child = await e2e.up(env)
    try:
        async with TaskbusClient.connect(load_settings(environ=env)) as client:
            await client.stats(wait_s=DEADLINE_S)
            gatherer = MetricsGatherer(client)
            await gatherer.start()
            try:
                await client.create("user.pid", f"{e2e.TASKS}:Pid", "@yearly")
                await client.trigger("user.pid")

                async def ran_there() -> bool:
                    now = await scrape(gatherer)
                    return (
                        now.count("taskbus_runs_total", state="succeeded", category="user") == 1
                        and now.value("taskbus_event_loop_lag_seconds", actor="executor-user")
                        is not None
                        and now.count("taskbus_store_writes_total", actor="store") > 0
                    )

                await eventually(ran_there, "the other process's run and numbers", DEADLINE_S)
            finally:
                await gatherer.close()
    finally:
        await e2e.terminate(child)


# ------------------------------------------------------------------ the pure parts


def _event(state: str, at: float, **fields: Any) -> Envelope:
    payload = {"task_id": "user.x", "state": state, **fields}
    return Envelope(topics.STATUS_EVENTS + ".alice", payload, "scheduler", timestamp=at)


DUE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RUN = {"execution_id": "e1", "scheduled_at": DUE.isoformat(), "attempt": 1}
ON_EXECUTOR = {**RUN, "executor": "user"}


def test_a_run_is_timed_whichever_of_its_events_comes_first() -> None:
    """The scheduler's ``queued`` (its trigger) and the executor's events come from two
    publishers, in either order."""
    due = DUE.timestamp()
    registry = CollectorRegistry()
    metrics = EventMetrics(registry)
    metrics.take(_event("started", due + 0.5, **ON_EXECUTOR))
    metrics.take(_event("queued", due + 0.1, reason="schedule", coalesced=0, **RUN))
    metrics.take(_event("succeeded", due + 2.0, error=None, **ON_EXECUTOR))
    late = {"category": "user", "trigger": "schedule"}
    assert registry.get_sample_value("taskbus_firing_lateness_seconds_sum", late) == 0.5
    ended = {"category": "user", "outcome": "succeeded"}
    assert registry.get_sample_value("taskbus_run_duration_seconds_sum", ended) == 1.5
    assert metrics.tracked == 0


def test_only_fires_due_at_their_instant_are_timed_for_lateness() -> None:
    registry = CollectorRegistry()
    metrics = EventMetrics(registry)
    metrics.take(_event("queued", 1.0, reason="backfill", coalesced=0, **RUN))
    metrics.take(_event("started", DUE.timestamp() + 9e6, **ON_EXECUTOR))
    assert (
        registry.get_sample_value("taskbus_runs_total", {"state": "started", "category": "user"})
        == 1
    )
    late = [s for f in registry.collect() if f.name.startswith("taskbus_firing") for s in f.samples]
    assert late == []


def test_a_dead_letter_is_counted_whoever_wrote_it() -> None:
    """The scheduler publishes the dead letters it writes; an executor that quarantines a
    poison dispatch writes one and says ``quarantined``."""
    registry = CollectorRegistry()
    metrics = EventMetrics(registry)
    letter = {"task_id": "user.x", "scheduled_at": DUE.isoformat(), "attempts": 3}
    metrics.take(Envelope(topics.DEAD_EVENTS + ".alice", letter, "scheduler"))
    metrics.take(_event("quarantined", 1.0, reason="poison", **ON_EXECUTOR))
    assert registry.get_sample_value("taskbus_dead_letters_total", {"category": "user"}) == 2
    quarantined = {"state": "quarantined", "category": "user"}
    assert registry.get_sample_value("taskbus_runs_total", quarantined) == 1


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"state": "started"}, "task_id: expected text"),
        ({"task_id": "nope", "state": "started"}, "nope"),
        ({"task_id": "user.x"}, "state: expected text"),
        ({**ON_EXECUTOR, "task_id": "user.x", "state": "started", "scheduled_at": "noon"}, "noon"),
        (
            {**ON_EXECUTOR, "task_id": "user.x", "state": "started", "scheduled_at": "2026-01-01"},
            "offset",
        ),
    ],
)
def test_an_unreadable_event_changes_nothing_but_its_count(
    payload: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    metrics = EventMetrics(registry)
    metrics.take(Envelope(topics.STATUS_EVENTS + ".alice", payload, "mallory"))
    changed = [
        (s.name, s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created") and s.value
    ]
    assert changed == [("taskbus_metrics_unreadable_events_total", 1.0)]
    assert metrics.tracked == 0
    assert why in caplog.text


@pytest.mark.parametrize(
    ("state", "reason", "gate"),
    [
        ("deferred", "concurrency limit reached", "concurrency"),
        ("deferred", "the previous run of this task is still running", "overlap"),
        ("deferred", "event loop lags 240 ms", "lag"),
        ("deferred", "cpu 97% > 90%", "load"),
        ("deferred", "memory 95% > 90%", "load"),
        ("deferred", "waiting for the system to be idle", "idle"),
        (
            "buffered",
            "overlap: buffered (buffer_one) while run 2026-01-01T12:00:00+00:00 runs",
            "overlap",
        ),
        ("buffered", "concurrency: category user at its limit of 5 runs at once", "concurrency"),
        ("waiting", "", "dependencies"),
        ("deferred", "something new", "other"),
    ],
)
def test_each_hold_is_counted_at_its_gate(state: str, reason: str, gate: str) -> None:
    assert gate_of(state, reason) == gate


def test_a_reply_of_the_wrong_shape_is_refused_naming_its_field() -> None:
    with pytest.raises(ValueError, match="status: expected one of healthy, degraded, critical"):
        health_families({"status": "fine", "actors": {}})
    actors = {"store": {"status": "healthy", "restarts": 0, "metrics": {"commits": 1}}}
    with pytest.raises(ValueError, match=r"actors\.store\.metrics\.commit_seconds"):
        health_families({"status": "healthy", "actors": actors})
    queues = {"q": {"pending": 0}}
    reply = {"peers": 1, "counters": {}, "errors": {}, "dropped_events": 0, "pending_asks": 0}
    with pytest.raises(ValueError, match=r"queues\.q\.inflight: expected a number, got None"):
        bus_families({**reply, "queues": queues})


def test_health_passes_on_the_numbers_of_actors_that_report_in_time() -> None:
    """What ``Actor.metrics`` reports reaches the scrape through health's report; a silent
    actor's numbers are stale and left out."""
    now, interval = 1_000.0, 5.0

    def liveness(received: float) -> tuple[float, dict[str, Any]]:
        report = {"state": "running", "interval_s": interval, "metrics": {"runs_in_progress": 2}}
        return received, report

    actors = assess({"a": liveness(now - 1), "b": liveness(now - 4 * interval)}, now, 60.0)
    assert actors["actors"]["a"]["metrics"] == {"runs_in_progress": 2}
    assert "metrics" not in actors["actors"]["b"]
    scraped = {f.name: f for f in health_families(actors)}
    in_progress = scraped["taskbus_executor_runs_in_progress"].samples
    assert [(s.labels, s.value) for s in in_progress] == [({"actor": "a"}, 2.0)]
    up = {s.labels["actor"]: s.value for s in scraped["taskbus_actor_up"].samples}
    assert up == {"a": 1.0, "b": 0.0}
