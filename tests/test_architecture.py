"""Dependencies point one way (STYLE item 4), proven by walking every import with ``ast``.

    config     <- everything
    bus        -> config
    scheduler  -> config
    tasks      -> config, scheduler
    store      -> config, bus.ids, bus.nesting     (persistence knows nothing of the bus)
    actors     -> bus, scheduler, tasks, store, config   (wires them together on the bus)
    taskbus    -> anything: the public host API and the CLI; nothing of ours imports it

A rule names packages, or single modules (``bus.ids``) where only one module of a package may be
imported.

Imports under ``if TYPE_CHECKING:`` count too: a type-only reverse edge is still a reverse edge.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, frozenset[str]] = {
    "config": frozenset(),
    "bus": frozenset({"config"}),
    "scheduler": frozenset({"config"}),
    "tasks": frozenset({"config", "scheduler"}),
    "store": frozenset({"config", "bus.ids", "bus.nesting"}),
    "actors": frozenset({"bus", "scheduler", "tasks", "store", "config"}),
    "taskbus": frozenset({"bus", "scheduler", "tasks", "store", "actors", "config"}),
}
NEVER_IMPORTED = frozenset({"tests", "benchmarks", "scripts"})


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    module = _module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if node.module is None:  # `from . import wire`: each name may be a module
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}" if target else alias.name
            else:
                yield node.lineno, target
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _allowed(target: str, may_import: frozenset[str]) -> bool:
    """Whether ``target`` is one of the allowed packages, or an allowed module or inside one."""
    parts = target.split(".")
    return any(".".join(parts[:n]) in may_import for n in range(1, len(parts) + 1))


def violations(root: Path, allowed: dict[str, frozenset[str]]) -> list[str]:
    """Every import of one of our packages that the rules do not allow, as readable lines."""
    ours = set(allowed) | NEVER_IMPORTED
    found: list[str] = []
    for package, may_import in sorted(allowed.items()):
        for path in sorted((root / package).rglob("*.py")):
            for line, target in sorted(_imports(path, root)):
                top = target.split(".")[0]
                if top in ours and top != package and not _allowed(target, may_import):
                    rule = ", ".join(sorted(may_import)) or "nothing of taskbus"
                    found.append(
                        f"{path.relative_to(root)}:{line} ({_module_name(path, root)}) imports "
                        f"{target}; {package} may import {rule}"
                    )
    return found


def test_dependencies_point_one_way() -> None:
    assert violations(ROOT, ALLOWED) == []


def test_every_package_is_covered_by_a_rule() -> None:
    """A new package must be given its place here; a missing one fails instead of passing."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    assert {name.split(".")[0] for name in listed} == set(ALLOWED)
    for package in ALLOWED:
        assert (ROOT / package / "__init__.py").is_file(), package


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    """setuptools ships only the packages it is told: a subpackage left out of the list works in
    an editable install and is missing from the wheel.
    """
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {
        _module_name(init, ROOT)
        for package in ALLOWED
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert found == listed


def _write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


def test_the_checker_catches_reverse_edges(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "config/__init__.py": "import bus\n",
            "bus/__init__.py": "from config import settings\n",
            "bus/sub/__init__.py": "",
            "bus/sub/mod.py": (
                "from typing import TYPE_CHECKING\n"
                "from ... import actors\n"
                "from .. import wire\n"
                "if TYPE_CHECKING:\n"
                "    from scheduler.jobs import Job\n"
                "import importlib\n"
                "importlib.import_module('tasks.runner')\n"
            ),
            "bus/wire.py": "import zmq\nimport msgpack\n",
            "scheduler/__init__.py": "from tests.conftest import keys\n",
            "tasks/__init__.py": "from scheduler import cron\nfrom config import x\n",
            "actors/__init__.py": "import bus, scheduler, tasks, config\n",
        },
    )
    found = violations(tmp_path, ALLOWED)
    assert found == [
        "bus/sub/mod.py:2 (bus.sub.mod) imports actors; bus may import config",
        "bus/sub/mod.py:5 (bus.sub.mod) imports scheduler.jobs; bus may import config",
        "bus/sub/mod.py:7 (bus.sub.mod) imports tasks.runner; bus may import config",
        "config/__init__.py:1 (config) imports bus; config may import nothing of taskbus",
        "scheduler/__init__.py:1 (scheduler) imports tests.conftest; scheduler may import config",
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from . import wire\n", "bus.sub.wire"),
        ("from .. import wire\n", "bus.wire"),
        ("from ..envelope import Envelope\n", "bus.envelope"),
        ("from .peer import Peer\n", "bus.sub.peer"),
        ("from ... import actors\n", "actors"),
        ("import bus.envelope as env\n", "bus.envelope"),
    ],
)
def test_relative_imports_resolve_from_the_file_s_package(
    tmp_path: Path, source: str, expected: str
) -> None:
    _write(tmp_path, {"bus/sub/mod.py": source})
    targets = [t for _, t in _imports(tmp_path / "bus/sub/mod.py", tmp_path)]
    assert targets == [expected]


def test_the_walk_sees_the_real_edges() -> None:
    """Guards against a vacuous pass: known allowed edges are found in the real tree."""
    edges = {
        (package, target.split(".")[0])
        for package in ALLOWED
        for path in (ROOT / package).rglob("*.py")
        for _, target in _imports(path, ROOT)
    }
    assert ("bus", "config") in edges
    assert ("bus", "bus") in edges
    assert ("store", "bus") in edges  # bus.ids, allowed as a module
    assert ("taskbus", "actors") in edges
    assert ("actors", "store") in edges


def test_module_rules_and_the_public_package(tmp_path: Path) -> None:
    """``store`` may import ``bus.ids`` but nothing else of the bus, and nothing of ours imports
    the public ``taskbus`` package."""
    _write(
        tmp_path,
        {
            "store/__init__.py": (
                "from bus.ids import new_message_id\nfrom bus.envelope import Envelope\n"
            ),
            "store/deep.py": "import bus.ids.sub\nimport bus\nimport actors.storing\n",
            "actors/__init__.py": "from taskbus import Taskbus\nimport store\n",
            "taskbus/__init__.py": "import actors, bus, store, tasks, scheduler, config\n",
        },
    )
    assert violations(tmp_path, ALLOWED) == [
        "actors/__init__.py:1 (actors) imports taskbus; actors may import bus, config, scheduler, "
        "store, tasks",
        "store/__init__.py:2 (store) imports bus.envelope; store may import bus.ids, bus.nesting, "
        "config",
        "store/deep.py:2 (store.deep) imports bus; store may import bus.ids, bus.nesting, config",
        "store/deep.py:3 (store.deep) imports actors.storing; store may import bus.ids, "
        "bus.nesting, config",
    ]
