"""Where the project's files live: the user's cache and the shipped fixtures."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$ILLUSION_CACHE`` or ``~/.cache/illusion``."""
    return Path(os.environ.get("ILLUSION_CACHE") or Path.home() / ".cache" / "illusion")


def fixtures_dir() -> Path:
    """The shipped fixtures: the source tree's ``fixtures/``, or the copy packaged in the wheel."""
    source = Path(__file__).resolve().parent.parent / "fixtures"
    if (source / "qa").is_dir():
        return source
    from importlib.resources import files

    return Path(str(files("illusion") / "_fixtures"))
