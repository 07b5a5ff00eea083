"""The backend protocol and its request records (see the package docstring for the contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Sequence

Progress = Callable[[str], None]
PromptFormat = Literal["auto", "chat", "plain"]
Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One turn of a conversation; a backend renders turns into the exact prompt text."""

    role: Role
    content: str


@dataclass(frozen=True)
class ScoreRequest:
    """MC: the summed log-probability of each option as the continuation of ``prompt``."""

    prompt: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class GreedyRequest:
    """Greedy decoding of ``prompt`` up to the answer's first newline (or EOS, or the token limit).

    With ``gold_forms`` the backend also reports the best rank of their first tokens along the
    greedy path and at its first position (the gold rank).
    """

    prompt: str
    gold_forms: tuple[str, ...] = ()


@dataclass(frozen=True)
class SampleRequest:
    """One sampled answer line per seed, at ``temperature``; a seed fixes its draw, whatever else
    shares the batch."""

    prompt: str
    seeds: tuple[int, ...]
    temperature: float


@dataclass(frozen=True)
class BeamRequest:
    """Beam search with ``beams`` beams (length penalty 1, no early stopping); all beams returned."""

    prompt: str
    beams: int


@dataclass(frozen=True)
class Greedy:
    """A greedy answer line; the ranks are None when the request named no gold forms."""

    text: str
    gold_rank: int | None = None
    first_position_rank: int | None = None


class Backend(Protocol):
    """What the probes need of an inference engine; each method takes a batch of requests and
    returns one result per request, in order."""

    prompt_format: Literal["chat", "plain"]  # the format ``render`` uses ("auto" already resolved)
    stats: dict  # wall time and token counts per phase, for benchmarks/probe_speed.py

    def render(self, messages: Sequence[Message]) -> str:
        """The exact prompt text for a conversation that ends with a user turn."""

    def score_options(self, requests: Sequence[ScoreRequest], *,
                      progress: Progress | None = None) -> list[tuple[float, ...]]:
        """Each request's option scores, aligned with its options."""

    def greedy(self, requests: Sequence[GreedyRequest], *, progress: Progress | None = None) -> list[Greedy]:
        """Each request's greedy answer line (and gold ranks, where asked)."""

    def score_and_greedy(self, requests: Sequence[tuple[ScoreRequest, GreedyRequest]], *,
                         progress: Progress | None = None) -> list[tuple[tuple[float, ...], Greedy]]:
        """Both of the above for pairs on the same prompt: a backend can share the prompt's
        computation (``score_then_greedy`` is the plain way to provide it)."""

    def sample(self, requests: Sequence[SampleRequest]) -> list[tuple[str, ...]]:
        """Each request's sampled answer lines, one per seed."""

    def beam(self, requests: Sequence[BeamRequest]) -> list[tuple[str, ...]]:
        """Each request's answer lines, one per beam, best first."""


def score_then_greedy(backend: Backend, requests: Sequence[tuple[ScoreRequest, GreedyRequest]], *,
                      progress: Progress | None = None) -> list[tuple[tuple[float, ...], Greedy]]:
    """``score_and_greedy`` for a backend that cannot share the prompt between the two."""
    scores = backend.score_options([score for score, _ in requests])
    answers = backend.greedy([greedy for _, greedy in requests], progress=progress)
    return list(zip(scores, answers))
