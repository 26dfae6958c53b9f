"""The built-in Reminder's options: a topic outside ``user.`` or a message that is not text is
refused with the option named. (Its run, publishing on the bus, is proved end to end by the
README's embedding snippet in tests/e2e/test_readme.py.)"""

from __future__ import annotations

import pytest

from tasks import TaskRegistry
from tasks.errors import OptionsError, TaskPermissionError
from tasks.reminders import Reminder, ReminderOptions


def test_defaults_and_a_resolvable_user_class() -> None:
    options = Reminder.read_options({}, task_id="user.reflect")
    assert options == ReminderOptions(message="", topic="user.reminder")
    registry = TaskRegistry.with_builtins()
    assert registry.resolve("user.reflect", Reminder.key()) is Reminder


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"topic": "scheduler.task.dispatch.user"}, "options.topic"),
        ({"topic": "user.Upper"}, "options.topic"),
        ({"message": 7}, "options.message"),
        ({"message": "x" * 4097}, "options.message"),
        ({"colour": "red"}, "options.colour"),
    ],
)
def test_bad_options_are_refused_by_name(config: dict[str, object], named: str) -> None:
    with pytest.raises(OptionsError, match=named):
        Reminder.read_options(config, task_id="user.reflect")


def test_a_code_defined_id_cannot_run_it() -> None:
    with pytest.raises(TaskPermissionError, match="run only their code-defined class"):
        TaskRegistry.with_builtins().resolve("maintenance.reminder", Reminder.key())
