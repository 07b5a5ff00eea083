"""The progress display: a bar with count, rate and time left on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from illusion.progress import ProgressDisplay, Step, clock_text, parse_step


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_count_messages_are_steps_of_a_task():
    assert parse_step("candidate: 640/2000 items") == Step("candidate", 640, 2000, "items")
    assert parse_step("recovery probes 2/4") == Step("recovery probes", 2, 4, "")
    assert parse_step("wanda 0.5: block 3/30 pruned (7 matrices)") == Step("wanda 0.5: block", 3, 30, "")
    assert parse_step("loading smollm2-135m (float32, cpu)") is None
    assert parse_step("0/0 items") is None


@given(st.integers(0, 10**6))
def test_clock_text_reads_back(seconds):
    parts = [int(x) for x in clock_text(seconds).split(":")]
    assert sum(p * 60**i for i, p in enumerate(reversed(parts))) == seconds
    assert all(p < 60 for p in parts[1:])


def test_without_a_terminal_only_plain_lines_with_rate_and_time_left():
    out, clock = io.StringIO(), Clock()
    display = ProgressDisplay(out, prefix="[illusion gw1]", clock=clock)
    display.show("loading m (float32, cpu)")
    display.show("candidate: 64/256 items")
    clock.now += 4
    display.show("candidate: 128/256 items")
    clock.now += 4
    display.show("candidate: 256/256 items")
    assert out.getvalue().splitlines() == [
        "[illusion gw1] loading m (float32, cpu)",
        "[illusion gw1] candidate: 64/256 items",
        "[illusion gw1] candidate: 128/256 items (16 items/s, 0:08 left)",
        "[illusion gw1] candidate: 256/256 items (24 items/s, done)",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_on_a_terminal_a_bar_with_count_rate_and_time_left_and_lines_above_it():
    out = FakeTTY()
    display = ProgressDisplay(out, prefix="[illusion]", position=0)
    display.show("recovery probes 1/3")
    display.show("a note while the bar is drawn")
    display.show("recovery probes 2/3")
    display.show("recovery probes 3/3")
    text = out.getvalue()
    assert "\r" in text  # redrawn in place, not one line per step
    assert "[illusion] recovery probes" in text and "3/3" in text
    assert "it/s" in text or "s/it" in text  # the rate
    assert "<" in text  # tqdm's elapsed<remaining
    assert "[illusion] a note while the bar is drawn\n" in text
    assert display._tasks == {}  # the bar closed at 3/3


def test_a_task_that_starts_again_gets_a_new_bar():
    out, clock = io.StringIO(), Clock()
    display = ProgressDisplay(out, clock=clock)
    display.show("reference: 2/4 items")
    clock.now += 1
    display.show("reference: 1/4 items")  # a second batch of work under the same name
    clock.now += 1
    display.show("reference: 3/4 items")
    assert out.getvalue().splitlines()[-1] == "[illusion] reference: 3/4 items (2 items/s, 0:00 left)"
