"""The store's layers: the ``store`` package does no messaging, and only its actor
(``actors.storing``) touches the bus and the actor runtime (STYLE item 4; the package-level rules
are in tests/test_architecture.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.test_architecture import ROOT, _imports

STORE = ROOT / "store"
# The package that wires the store to the bus and the actor runtime.
ACTOR = ROOT / "actors" / "storing"
# What the database modules may import of taskbus: config, each other, and the wire format's
# pure helpers (message ids, the nesting limit).
ALLOWED_BELOW = ("config", "store", "bus.ids", "bus.nesting")
OURS = ("config", "bus", "store", "actors", "scheduler", "tasks", "taskbus", "tests", "benchmarks")


def taskbus_imports(path: Path) -> list[str]:
    return [target for _, target in _imports(path, ROOT) if target.split(".")[0] in OURS]


def test_the_database_modules_import_only_config_and_themselves() -> None:
    below = sorted(STORE.glob("*.py"))
    assert len(below) >= 10
    wrong = {
        path.name: [t for t in taskbus_imports(path) if not t.startswith(ALLOWED_BELOW)]
        for path in below
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_the_actor_wires_the_store_to_the_bus_and_nothing_imports_the_scheduler() -> None:
    targets = {t for path in ACTOR.glob("*.py") for t in taskbus_imports(path)}
    assert "actors.actor" in targets
    assert "bus" in targets
    assert not any(t.split(".")[0] in ("scheduler", "tasks", "tests") for t in targets)
    assert not any(
        t.startswith("actors.") and not t.startswith(("actors.storing", "actors.actor"))
        for t in targets
    )
