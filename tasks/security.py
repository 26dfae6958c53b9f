"""Built-in security task: rotate the store's encryption key, then prove the file is whole."""

from __future__ import annotations

from dataclasses import dataclass

from config import topics
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.options import TaskOptions, require_option
from tasks.result import TaskResult

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class KeyRotationOptions(TaskOptions):
    rekey_timeout_s: float = 300.0
    check_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        require_option(self.rekey_timeout_s > 0, "rekey_timeout_s", "seconds > 0")
        require_option(self.check_timeout_s > 0, "check_timeout_s", "seconds > 0")


class KeyRotation(BaseTask):
    """``store.maintenance.rekey`` (a backup under the old key, then the file re-encrypted under
    a new master key), then ``store.maintenance.integrity_check``; fails unless it is ok.

    The result names the backup and its key file, never a key. Rotation over the bus needs the
    store's key file (see docs/store.md, key rotation); otherwise the store refuses and the run
    fails with its reason.
    """

    task_id = "security.key_rotation"
    default_schedule = "0 5 1 * *"
    description = "rekey the store after a backup, then check its integrity"
    Options = KeyRotationOptions
    timeout_s = 900.0

    async def execute(self, ctx: TaskContext[KeyRotationOptions]) -> TaskResult:
        options = ctx.options
        rekey = await ctx.services.ask(topics.STORE_REKEY, {}, timeout=options.rekey_timeout_s)
        await ctx.progress(0.5, "rekeyed; checking integrity")
        check = await ctx.services.ask(
            topics.STORE_INTEGRITY_CHECK, {}, timeout=options.check_timeout_s
        )
        problems = [str(problem) for problem in check.get("problems") or []]
        data = {
            "backup": rekey.get("backup"),
            "backup_key_file": rekey.get("backup_key_file"),
            "key_source": rekey.get("key_source"),
            "integrity_ok": check.get("ok") is True,
            "problems": problems[:MAX_PROBLEMS],
        }
        if check.get("ok") is not True:
            shown = "; ".join(problems[:3]) or "no reason given"
            return TaskResult.fail(f"integrity check after key rotation failed: {shown}", **data)
        return TaskResult.ok(**data)
