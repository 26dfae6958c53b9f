"""docs/protocol.md documents every status event kind the scheduler and the executors publish,
each with its fields, and the key file format the bus reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import zmq.auth

from bus.keys import KeysDirectory

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
PUBLISHERS = sorted((ROOT / "actors" / "scheduling").glob("*.py")) + sorted(
    (ROOT / "actors" / "executing").glob("*.py")
)


def _section(heading: str) -> str:
    start = PROTOCOL.index(heading)
    return PROTOCOL[start : PROTOCOL.index("\n#", start + len(heading))]


def _documented_states() -> set[str]:
    section = _section("### Status events")
    rows = re.findall(r"^\| `(\w+)` \|", section, re.M)
    prose = re.findall(r"about a run: `(\w+)`", section)
    return set(rows) | set(prose)


def _published_states() -> set[str]:
    """The state literals passed where a status event is made: ``events.status(owner, task_id,
    state, ...)``, ``announce(state, ...)``, ``self._status(dispatch, state, ...)``, and what a
    settled run's ``state`` is assigned."""
    states: set[str] = set()
    for path in PUBLISHERS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                position = {"status": 2, "announce": 0, "_status": 1}.get(name)
                if position is not None and len(node.args) > position:
                    argument = node.args[position]
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        states.add(argument.value)
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "state" for target in node.targets
            ):
                states.update(
                    constant.value
                    for constant in ast.walk(node.value)
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str)
                )
    return states


def test_every_published_status_kind_is_documented() -> None:
    published = _published_states()
    # The walk finds both publishers' states (not vacuous).
    assert {"defined", "missed", "queued", "started", "succeeded", "quarantined"} <= published
    assert published - _documented_states() == set()


def test_progress_and_queued_fields_are_documented_with_their_types() -> None:
    section = _section("### Status events")
    for field in ("`fraction` (float", "`coalesced` (int", "`attempt` (int", "`execution_id`"):
        assert field in section, field
    assert "`execution_id` is a UUID as text" in section


def test_the_error_shape_on_the_wire_is_documented() -> None:
    assert '`{"$error": {"code": <text>, "reason": <text>}}`' in PROTOCOL
    assert "`invalid: misfire_policy" not in PROTOCOL  # the CLI's rendering, not the wire's


def test_the_key_file_example_is_what_the_bus_writes(tmp_path: Path) -> None:
    example = re.search(r"## 14\. Key files.*?```\n(.*?)```", PROTOCOL, re.S)
    assert example, "no key file example"
    written = KeysDirectory(tmp_path / "keys")
    written.broker_keypair(create=True)
    real = (tmp_path / "keys" / "server" / "broker.key").read_text().splitlines()
    shown = example.group(1).splitlines()
    assert [line.split("=")[0] for line in shown[1:]] == [line.split("=")[0] for line in real[1:]]
    documented = tmp_path / "documented.key"
    documented.write_text(example.group(1))
    public, secret = zmq.auth.load_certificate(documented)
    assert len(public) == 40
    assert secret is None
