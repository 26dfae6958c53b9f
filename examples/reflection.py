"""An agent's nightly reflection as a durable run (docs/runs.md): collect the day's notes, draft
a summary, wait for the user's approval (a signal, for up to a day), then keep the summary.

Each stage is a step, so a run that stops (its executor killed, the host restarted) goes on
where it was and never drafts twice; while it waits for the approval it holds no executor slot.
The user approves with ``taskbus run signal <run> approve --payload '{"edit": "..."}'``; a
``note`` signal is logged with the run whenever it arrives.

    taskbus task create user.reflect examples.reflection:NightlyReflection "0 23 * * *" \\
        --config '{"notes_dir": "/home/me/notes", "out_dir": "/home/me/reflections"}'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tasks import BaseTask, SignalTimedOut, TaskContext, TaskOptions, TaskResult, signal_handler


@dataclass(frozen=True)
class ReflectionOptions(TaskOptions):
    notes_dir: str = ""  # the day's notes, one text file each
    out_dir: str = ""  # where approved summaries are kept
    approval_hours: float = 24.0  # how long the draft waits for the user


def collect(notes_dir: str) -> list[str]:
    """The day's notes (a plain function: it runs in the executor's thread pool)."""
    return [p.read_text().strip() for p in sorted(Path(notes_dir).glob("*.txt"))]


def draft(notes: list[str]) -> str:
    lines = [f"- {note.splitlines()[0]}" for note in notes if note]
    return f"Today, {len(lines)} notes:\n" + "\n".join(lines)


def keep(out_dir: str, name: str, text: str) -> str:
    path = Path(out_dir) / f"{name}.md"
    path.write_text(text + "\n")
    return str(path)


class NightlyReflection(BaseTask):
    category = "user"
    Options = ReflectionOptions

    @signal_handler("note")
    async def on_note(self, ctx: TaskContext[ReflectionOptions], payload: Any) -> None:
        ctx.log.info("note from the user: %s", payload)

    async def execute(self, ctx: TaskContext[ReflectionOptions]) -> TaskResult:
        options = ctx.options
        notes = await ctx.step("collect", collect, options.notes_dir)
        summary = await ctx.step("draft", draft, notes)
        await ctx.progress(0.5, "waiting for approval")
        try:
            answer = await ctx.wait_signal(
                "approve", timeout=timedelta(hours=options.approval_hours)
            )
        except SignalTimedOut:
            return TaskResult.skip("nobody approved the draft within the day")
        edit = answer.get("edit") if isinstance(answer, dict) else None
        final = summary if not edit else f"{summary}\n\n{edit}"
        name = ctx.scheduled_at.date().isoformat()
        path = await ctx.step("keep", keep, options.out_dir, name, final)
        return TaskResult.ok(path=path, notes=len(notes))
