"""A pytest plugin that fails the session when a guarded directory changed while it ran.

tests/conftest.py guards the user's own results store and model cache (``~/.cache/illusion`` and
any ``$ILLUSION_CACHE`` set when pytest started): tests must only ever use temporary caches.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

State = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns); "." for the directory itself


def tree_state(root: Path) -> State:
    """Every file and directory under ``root`` with its size and modification time; {} if absent."""
    if not root.is_dir():
        return {}
    state: State = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(folder) / name
            try:
                stat = path.lstat()
            except FileNotFoundError:  # removed while walking: the comparison will see it missing
                continue
            state[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return state


def tree_changes(before: State, after: State) -> list[str]:
    """``created X`` / ``modified X`` / ``removed X`` lines, sorted."""
    lines = [f"created {p}" for p in after.keys() - before.keys()]
    lines += [f"removed {p}" for p in before.keys() - after.keys()]
    lines += [f"modified {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(lines)


class CacheGuard:
    """Snapshot the guarded directories at session start; fail the session if any changed by its end."""

    def __init__(self, roots: list[Path]):
        self.roots = list(dict.fromkeys(Path(r) for r in roots))
        self.before: dict[Path, State] = {}

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.before = {root: tree_state(root) for root in self.roots}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        found = [f"{root}: {line}" for root in self.roots
                 for line in tree_changes(self.before.get(root, {}), tree_state(root))]
        if not found:
            return
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        shown = found[:20] + ([f"... and {len(found) - 20} more"] if len(found) > 20 else [])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = ("the user's illusion cache changed while the tests ran: tests must use a temporary "
                   "ILLUSION_CACHE (tests/conftest.py); if another program used that cache meanwhile "
                   "(make demo, another pytest), rerun without it:\n  " + "\n  ".join(shown))
        if reporter:
            reporter.write_line("ERROR " + message, red=True, bold=True)
        else:
            print("ERROR " + message)
