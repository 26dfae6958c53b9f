"""health.assess is pure: liveness reports and "now" in, statuses with reasons out."""

from __future__ import annotations

from typing import Any

from actors import ActorState, HealthActor, assess
from actors.health import someone_leads

NOW = 1_000.0
STUCK_AFTER_S = 60.0


def report(state: ActorState = ActorState.RUNNING, **extra: Any) -> dict[str, Any]:
    return {
        "state": str(state),
        "reason": "",
        "restarts": 0,
        "host": "h",
        "pid": 7,
        "interval_s": 5.0,
        "busy_s": 0.0,
        "inflight": [],
        **extra,
    }


def judge(reports: dict[str, tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    return assess(reports, NOW, STUCK_AFTER_S)


def test_no_reports_is_healthy() -> None:
    assert judge({}) == {"status": "healthy", "actors": {}}


def test_a_running_actor_heard_recently_is_healthy() -> None:
    result = judge({"echo": (NOW - 1, report(restarts=2))})
    assert result["status"] == "healthy"
    assert result["actors"]["echo"] == {
        "status": "healthy",
        "reasons": [],
        "state": "running",
        "restarts": 2,
        "host": "h",
        "pid": 7,
    }


def test_a_handler_busy_past_the_limit_is_degraded_stuck() -> None:
    busy = report(busy_s=STUCK_AFTER_S + 1, inflight=["job(jobs.x) running 61.00s"])
    result = judge({"worker": (NOW, busy)})
    assert result["status"] == "degraded"
    assert result["actors"]["worker"]["reasons"] == ["stuck: job(jobs.x) running 61.00s"]


def test_busy_but_within_the_limit_is_healthy() -> None:
    assert judge({"worker": (NOW, report(busy_s=STUCK_AFTER_S - 1))})["status"] == "healthy"


def test_a_restarting_actor_is_degraded_with_its_reason() -> None:
    reason = "restart 2 in 1.00s after RuntimeError: boom"
    result = judge({"flaky": (NOW, report(ActorState.RESTARTING, reason=reason, restarts=2))})
    assert result["status"] == "degraded"
    assert result["actors"]["flaky"]["reasons"] == [reason]
    assert result["actors"]["flaky"]["restarts"] == 2


def test_a_stopped_actor_is_degraded() -> None:
    result = judge({"done": (NOW, report(ActorState.STOPPED))})
    assert result["status"] == "degraded"
    assert result["actors"]["done"]["reasons"] == ["stopped"]


def test_a_failed_actor_is_critical_with_its_last_error() -> None:
    reason = "gave up after 3 failures within 60.0s; last: RuntimeError: boom"
    result = judge({"flaky": (NOW, report(ActorState.FAILED, reason=reason))})
    assert result["status"] == "critical"
    assert result["actors"]["flaky"]["reasons"] == [f"failed: {reason}"]


def test_silence_past_three_liveness_intervals_is_critical_stale() -> None:
    result = judge({"gone": (NOW - 16.0, report(interval_s=5.0))})
    assert result["status"] == "critical"
    assert result["actors"]["gone"]["reasons"] == ["no liveness for 16.0s"]
    assert judge({"late": (NOW - 14.0, report(interval_s=5.0))})["status"] == "healthy"


def test_stale_outranks_restarting_and_stuck() -> None:
    for state, extra in ((ActorState.RESTARTING, {}), (ActorState.RUNNING, {"busy_s": 999.0})):
        result = judge({"x": (NOW - 100.0, report(state, **extra))})
        assert result["status"] == "critical", state


def test_the_overall_status_is_the_worst_of_the_actors() -> None:
    healthy = (NOW, report())
    degraded = (NOW, report(ActorState.RESTARTING, reason="restart 1"))
    critical = (NOW, report(ActorState.FAILED, reason="boom"))
    assert judge({"a": healthy, "b": degraded})["status"] == "degraded"
    assert judge({"a": healthy, "b": degraded, "c": critical})["status"] == "critical"
    mixed = judge({"c": critical, "a": healthy})
    assert [mixed["actors"][n]["status"] for n in ("a", "c")] == ["healthy", "critical"]


def test_an_actor_reporting_itself_degraded_is_degraded_with_its_reasons() -> None:
    lagging = report(degraded=["event loop lags 250 ms: starts held", "quarantined: user.bad"])
    result = judge({"executor-user": (NOW, lagging)})
    assert result["status"] == "degraded"
    assert result["actors"]["executor-user"]["reasons"] == [
        "event loop lags 250 ms: starts held",
        "quarantined: user.bad",
    ]
    assert judge({"executor-user": (NOW, report(degraded=[]))})["status"] == "healthy"


def test_an_actor_that_reports_itself_critical_is_critical_with_its_reasons() -> None:
    broken = report(critical=["store cannot read its file: page 7 is damaged"], degraded=["x"])
    result = judge({"store": (NOW, broken)})
    assert result["status"] == "critical"
    assert result["actors"]["store"]["reasons"] == ["store cannot read its file: page 7 is damaged"]


def is_scheduler(identity: str) -> bool:
    return identity.startswith("scheduler")


def test_a_running_scheduler_heard_recently_leads() -> None:
    standby = report(ActorState.STANDBY)
    leading = {"scheduler-a": (NOW, standby), "scheduler-b": (NOW - 1, report())}
    assert someone_leads(leading, NOW, is_scheduler) is True
    assert someone_leads({"scheduler-a": (NOW, standby)}, NOW, is_scheduler) is False
    silent = {"scheduler-b": (NOW - 16, report())}  # three 5 s intervals and more: gone
    assert someone_leads(silent, NOW, is_scheduler) is False
    assert someone_leads({"store": (NOW, report())}, NOW, is_scheduler) is None


def test_no_scheduler_leading_past_the_lease_ttl_is_critical_with_the_reason() -> None:
    reports = {"scheduler": (NOW, report(ActorState.STANDBY))}
    assert judge(reports)["status"] == "healthy"  # a standby alone says nothing yet
    within = assess(reports, NOW, STUCK_AFTER_S, leaderless_s=9.0, lease_ttl_s=10.0)
    assert within["status"] == "healthy"
    past = assess(reports, NOW, STUCK_AFTER_S, leaderless_s=31.0, lease_ttl_s=10.0)
    assert past["status"] == "critical"
    assert past["actors"]["scheduling"]["reasons"] == [
        "no scheduler has led for 31s (lease TTL 10s): nothing fires"
    ]
    assert past["actors"]["scheduler"]["status"] == "healthy"  # the standby itself is fine


async def test_the_health_actor_turns_critical_once_leading_lapses_past_the_ttl() -> None:
    now = [NOW]
    health = HealthActor(clock=lambda: now[0], lease_ttl_s=10.0, is_scheduler=is_scheduler)
    health._reports["scheduler"] = (now[0], report(ActorState.RUNNING))
    assert health.report()["status"] == "healthy"
    health._reports["scheduler"] = (now[0], report(ActorState.STANDBY))  # it lost the lease
    assert health.report()["status"] == "healthy"
    now[0] += 4.0
    health._reports["scheduler"] = (now[0], report(ActorState.STANDBY))
    assert health.report()["status"] == "healthy"
    now[0] += 7.0
    health._reports["scheduler"] = (now[0], report(ActorState.STANDBY))
    assert health.report()["actors"]["scheduling"]["reasons"] == [
        "no scheduler has led for 11s (lease TTL 10s): nothing fires"
    ]
    health._reports["scheduler"] = (now[0], report(ActorState.RUNNING))  # it leads again
    assert health.report()["status"] == "healthy"
