"""An agent's nightly reflection as a durable run (docs/runs.md): collect the day's notes, have a
child run draft the summary, wait for the user's approval (a signal, for up to a day), then keep
the summary; ``progress`` answers how far it is at any time.

Each stage is a step, so a run that stops (its executor killed, the host restarted) goes on
where it was and never collects or drafts twice; while it waits for the draft or the approval
it holds no executor slot. The user asks ``taskbus run query <run> progress``, approves with
``taskbus run signal <run> approve --payload '{"edit": "..."}'``; a ``note`` signal is logged
with the run whenever it arrives.

    taskbus task create user.reflect --class examples.reflection:NightlyReflection \\
        --schedule "0 23 * * *" --option notes_dir=/home/me/notes \\
        --option out_dir=/home/me/reflections
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tasks import (
    BaseTask,
    SignalTimedOut,
    TaskContext,
    TaskOptions,
    TaskResult,
    query,
    signal_handler,
)


@dataclass(frozen=True)
class ReflectionOptions(TaskOptions):
    notes_dir: str = ""  # the day's notes, one text file each
    out_dir: str = ""  # where approved summaries are kept
    approval_hours: float = 24.0  # how long the draft waits for the user


@dataclass(frozen=True)
class DraftOptions(TaskOptions):
    notes: list[str] = field(default_factory=list)


def collect(notes_dir: str) -> list[str]:
    """The day's notes (a plain function: it runs in the executor's thread pool)."""
    return [p.read_text().strip() for p in sorted(Path(notes_dir).glob("*.txt"))]


def keep(out_dir: str, name: str, text: str) -> str:
    path = Path(out_dir) / f"{name}.md"
    path.write_text(text + "\n")
    return str(path)


class DraftSummary(BaseTask):
    """The child run: a summary of the notes it is given (a language model would go here)."""

    category = "user"
    Options = DraftOptions

    async def execute(self, ctx: TaskContext[DraftOptions]) -> TaskResult:
        lines = [f"- {note.splitlines()[0]}" for note in ctx.options.notes if note]
        return TaskResult.ok(summary=f"Today, {len(lines)} notes:\n" + "\n".join(lines))


class NightlyReflection(BaseTask):
    category = "user"
    Options = ReflectionOptions

    def __init__(self) -> None:
        self.phase = "starting"

    @query("progress")
    def progress(self, ctx: TaskContext[ReflectionOptions]) -> dict[str, Any]:
        return {"phase": self.phase}

    @signal_handler("note")
    async def on_note(self, ctx: TaskContext[ReflectionOptions], payload: Any) -> None:
        ctx.log.info("note from the user: %s", payload)

    async def execute(self, ctx: TaskContext[ReflectionOptions]) -> TaskResult:
        options = ctx.options
        self.phase = "collecting"
        notes = await ctx.step("collect", collect, options.notes_dir)
        self.phase = "drafting"
        draft = await ctx.spawn(DraftSummary, {"notes": notes}, key="draft")
        summary = (await draft.result())["summary"]
        self.phase = "waiting for approval"
        try:
            answer = await ctx.wait_signal(
                "approve", timeout=timedelta(hours=options.approval_hours)
            )
        except SignalTimedOut:
            return TaskResult.skip("nobody approved the draft within the day")
        self.phase = "keeping"
        edit = answer.get("edit") if isinstance(answer, dict) else None
        final = summary if not edit else f"{summary}\n\n{edit}"
        name = ctx.scheduled_at.date().isoformat()
        path = await ctx.step("keep", keep, options.out_dir, name, final)
        self.phase = "done"
        return TaskResult.ok(path=path, notes=len(notes))
