"""The key rotation task: rekey, then an integrity check that must pass."""

from __future__ import annotations

import pytest

from tasks import TaskResult
from tasks.security import KeyRotation, KeyRotationOptions
from tests.tasks.kit import FakeServices, ProgressLog, make_context

REKEYED = {
    "backup": "/data/taskbus.db.20240501T050000Z.bak",
    "backup_key_file": "/data/taskbus.db.20240501T050000Z.bak.key",
    "key_source": "file",
}


async def test_rekeys_then_checks_integrity() -> None:
    services = FakeServices(
        {
            "store.maintenance.rekey": REKEYED,
            "store.maintenance.integrity_check": {"ok": True, "problems": []},
        }
    )
    progress = ProgressLog()
    ctx = make_context(KeyRotationOptions(), services=services, on_progress=progress)
    result = await KeyRotation().execute(ctx)
    assert services.asks == [
        ("store.maintenance.rekey", {}, 300.0),
        ("store.maintenance.integrity_check", {}, 300.0),
    ]
    assert result == TaskResult.ok(**REKEYED, integrity_ok=True, problems=[])
    assert progress.calls == [(0.5, "rekeyed; checking integrity")]


async def test_fails_when_the_rekeyed_file_is_not_whole() -> None:
    problems = [f"page {n}: btreeInitPage() returns error code 11" for n in range(30)]
    services = FakeServices(
        {
            "store.maintenance.rekey": REKEYED,
            "store.maintenance.integrity_check": {"ok": False, "problems": problems},
        }
    )
    ctx = make_context(KeyRotationOptions(), services=services)
    result = await KeyRotation().execute(ctx)
    assert not result.success
    assert result.error == ("integrity check after key rotation failed: " + "; ".join(problems[:3]))
    assert result.data["problems"] == problems[:20]
    assert result.data["integrity_ok"] is False
    assert result.data["backup"] == REKEYED["backup"]


async def test_a_refused_rekey_fails_the_run_without_checking() -> None:
    refusal = RuntimeError("store_error: rotation over the bus needs the key file")
    services = FakeServices({"store.maintenance.rekey": refusal})
    ctx = make_context(KeyRotationOptions(), services=services)
    with pytest.raises(RuntimeError, match="needs the key file"):
        await KeyRotation().execute(ctx)
    assert services.topics() == ["store.maintenance.rekey"]
