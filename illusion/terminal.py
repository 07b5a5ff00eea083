"""Untrusted text (dataset strings, model output, ids, paths) made safe to print on a terminal.

A dataset question ending in ``ESC [2J`` clears the screen; ``ESC ] 0; ... BEL`` retitles the
terminal; a right-to-left override makes ``gold: Paris`` read as something else. Every line the
plugin prints goes through :func:`safe_text`, which shows such characters as escapes instead.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included), DEL, C1 controls, and the invisible characters that
# change how the rest of a line displays: bidi marks, embeddings, overrides and isolates, and the
# line and paragraph separators.
_DISPLAY = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_DISPLAY}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_DISPLAY}]")


def _shown(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object, *, lines: bool = False) -> str:
    """``text`` with every control, bidi or separator character shown as ``\\xNN``/``\\uNNNN``.

    ``lines=True`` keeps newlines, for a message the plugin itself breaks into lines; a field
    value (a question, an answer, a model's output) never keeps them, so it cannot fake a line.
    Safe to apply twice: the escapes it writes are plain ASCII.
    """
    return (_UNSAFE_BUT_NEWLINE if lines else _UNSAFE).sub(_shown, str(text))


def has_unsafe(text: str) -> bool:
    """Whether ``text`` holds a character :func:`safe_text` would escape."""
    return _UNSAFE.search(text) is not None
