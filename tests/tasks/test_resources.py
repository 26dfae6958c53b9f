"""The system probe's CPU reading leaves out this process's own CPU (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

from actors.executing.resources import SystemProbe


def _proc(root: Path, *, idle: int, busy: int, own: int) -> None:
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (root / "meminfo").write_text("MemTotal: 1000 kB\nMemAvailable: 250 kB\n")
    (root / "self").mkdir(exist_ok=True)
    # pid (comm) state ... utime (field 14) stime (field 15); a command name with spaces
    (root / "self" / "stat").write_text(
        f"42 (python3 -m x) R 1 1 1 0 -1 4194304 120 0 0 0 {own} 0 0 0 20 0 1 0\n"
    )


def _probe(root: Path) -> SystemProbe:
    return SystemProbe(root, min_interval_s=0.0)


def test_the_cpu_this_process_uses_is_not_counted(tmp_path: Path) -> None:
    probe = _probe(tmp_path)
    _proc(tmp_path, idle=1000, busy=1000, own=0)
    probe.load()
    _proc(tmp_path, idle=1000, busy=1200, own=150)  # 200 busy ticks, 150 of them ours
    assert probe.load().cpu_percent == 25.0


def test_other_processes_cpu_is_counted(tmp_path: Path) -> None:
    probe = _probe(tmp_path)
    _proc(tmp_path, idle=1000, busy=1000, own=10)
    probe.load()
    _proc(tmp_path, idle=1010, busy=1090, own=10)  # 90 of 100 ticks busy, none ours
    assert probe.load().cpu_percent == 90.0


def test_without_its_own_stat_the_whole_system_is_counted(tmp_path: Path) -> None:
    probe = _probe(tmp_path)
    _proc(tmp_path, idle=100, busy=100, own=0)
    (tmp_path / "self" / "stat").unlink()
    probe.load()
    _proc(tmp_path, idle=100, busy=200, own=50)
    (tmp_path / "self" / "stat").unlink()
    assert probe.load().cpu_percent == 100.0


def test_the_real_proc_gives_a_percentage() -> None:
    probe = _probe(Path("/proc"))
    probe.load()
    sum(range(200_000))  # this process's own work, left out
    assert 0.0 <= probe.load().cpu_percent <= 100.0
