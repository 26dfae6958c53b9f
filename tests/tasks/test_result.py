"""TaskResult: the constructors, and plain data checked where the task made it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks import TaskResult, TaskUsageError


def test_ok_carries_its_data() -> None:
    result = TaskResult.ok(deleted=3, report={"pages": [1, 2]})
    assert result == TaskResult(success=True, data={"deleted": 3, "report": {"pages": [1, 2]}})
    assert not result.skipped
    assert result.error is None


def test_skip_is_a_success_with_its_reason() -> None:
    result = TaskResult.skip("nothing to clean")
    assert (result.success, result.skipped, result.data) == (
        True,
        True,
        {"reason": "nothing to clean"},
    )


def test_fail_carries_the_error_and_data() -> None:
    result = TaskResult.fail("disk full", free_mb=1.5)
    assert (result.success, result.error, result.data) == (False, "disk full", {"free_mb": 1.5})


def test_data_must_be_plain() -> None:
    with pytest.raises(TaskUsageError) as caught:
        TaskResult.ok(report={"at": [datetime(2024, 1, 1, tzinfo=UTC)]})
    assert str(caught.value) == (
        "result data.report.at[0]: datetime is not a plain value (None, bool, int, float, str, "
        "bytes, list, dict); convert it (datetime.isoformat())"
    )


def test_keys_must_be_str() -> None:
    with pytest.raises(TaskUsageError, match=r"^result data.table: keys are str, not int$"):
        TaskResult.ok(table={1: "one"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"success": False}, "a failed run has an error message and a successful one none"),
        (
            {"success": True, "error": "x"},
            "a failed run has an error message and a successful one none",
        ),
        ({"success": False, "error": ""}, "error must be a non-empty str, not ''"),
        (
            {"success": False, "error": "x", "skipped": True},
            "a skipped run is not a failure: skipped needs success=True",
        ),
    ],
)
def test_inconsistent_results_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TaskUsageError) as caught:
        TaskResult(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message
