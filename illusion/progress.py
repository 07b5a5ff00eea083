"""Progress a person can read: a bar with count, rate and time left on a terminal, plain lines in a log.

The long steps (probing each side, the recovery probes, pruning block by block) already report
counts as text, ``candidate: 640/2000 items`` or ``wanda 0.5: block 3/30 pruned``, through the
plain ``Callable[[str], None]`` every stage takes. :class:`ProgressDisplay` reads the ``N/M`` in
such a message as one step of a task (the text before the count names the task) and shows it:

- on a terminal, one tqdm bar per task (count, rate, time left), on its own line per xdist worker
  (``position``); other messages are printed above the bars;
- elsewhere (CI logs, pytester, a pipe), nothing but plain lines, each count line with its rate
  and time left as text: ``[illusion] candidate: 640/2000 items (21.3/s, 1:04 left)``.

Stages keep printing plain text, so nothing below this module knows whether a terminal is there.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

COUNT = re.compile(r"^(?P<task>.*?)(?P<done>\d+)/(?P<total>\d+)(?P<rest>.*)$")
UNITS = ("items", "blocks", "files")  # a word after the count that names what is counted


@dataclass(frozen=True)
class Step:
    """One count message: ``task`` (the text before the count) at ``done`` of ``total``."""

    task: str
    done: int
    total: int
    unit: str  # the word after the count when it names a unit ("items"), or "" (tqdm then counts "it")


def parse_step(message: str) -> Step | None:
    """The count in a progress message, or None for a message without one."""
    match = COUNT.match(message)
    if match is None or int(match["total"]) < 1:
        return None
    words = match["rest"].split()
    unit = words[0] if words and words[0] in UNITS else ""
    return Step(task=match["task"].rstrip(": ").strip(), done=int(match["done"]), total=int(match["total"]),
                unit=unit)


def clock_text(seconds: float) -> str:
    """``64`` -> ``1:04``; ``3725`` -> ``1:02:05``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class _Task:
    started: float
    first_done: int
    bar: Any = None  # the tqdm bar, on a terminal


@dataclass
class ProgressDisplay:
    """Shows progress messages on ``stream``: bars when it is a terminal, plain lines otherwise.

    ``prefix`` names the run (``[illusion gw1]``); ``position`` is the xdist worker's line among
    the bars. ``clock`` is injectable so that tests can check rates and times left.
    """

    stream: TextIO
    prefix: str = "[illusion]"
    position: int = 0
    tty: bool | None = None  # None: ask the stream
    clock: Callable[[], float] = time.monotonic
    _tasks: dict[str, _Task] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tty is None:
            isatty = getattr(self.stream, "isatty", None)
            self.tty = bool(isatty and isatty())

    def show(self, message: str) -> None:
        """One message: a step of a task (a bar, or a line with rate and time left), or a plain line."""
        step = parse_step(message)
        if step is None:
            self._line(self._prefixed(message))
            return
        now = self.clock()
        task = self._tasks.get(step.task)
        if task is None or step.done < task.first_done:  # a new run of the same task starts over
            self._close(step.task)
            task = self._tasks[step.task] = _Task(started=now, first_done=step.done)
        if self.tty:
            self._bar(step, task)
        else:
            self._line(self._prefixed(message) + self._pace(step, task, now))
        if step.done >= step.total:
            self._close(step.task)

    def _prefixed(self, text: str) -> str:
        return f"{self.prefix} {text}" if self.prefix else text

    def close(self) -> None:
        """End every bar (the run is over or failed)."""
        for name in list(self._tasks):
            self._close(name)

    def _pace(self, step: Step, task: _Task, now: float) -> str:
        """`` (21.3/s, 1:04 left)`` once a rate can be measured; the first step has none."""
        elapsed, moved = now - task.started, step.done - task.first_done
        if moved <= 0 or elapsed <= 0:
            return ""
        rate = moved / elapsed
        unit = step.unit or "steps"
        left = "done" if step.done >= step.total else f"{clock_text((step.total - step.done) / rate)} left"
        return f" ({rate:.3g} {unit}/s, {left})"

    def _bar(self, step: Step, task: _Task) -> None:
        from tqdm import tqdm

        if task.bar is None:
            task.bar = tqdm(total=step.total, initial=step.done, desc=self._prefixed(step.task),
                            unit=f" {step.unit}" if step.unit else "it", file=self.stream, position=self.position,
                            leave=True, dynamic_ncols=True, mininterval=0.2)
        else:
            task.bar.update(step.done - task.bar.n)

    def _close(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None and task.bar is not None:
            task.bar.close()

    def _line(self, line: str) -> None:
        if self.tty and any(task.bar is not None for task in self._tasks.values()):
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)  # above the bars, which redraw below it
        else:
            print(line, file=self.stream, flush=True)
