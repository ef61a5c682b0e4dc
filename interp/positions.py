"""Which token of each prompt an activation is read from.

A position is given as:

* ``"last"`` — the last token (same as ``-1``);
* an int ``k`` — ``k < 0`` counts back from the last token (``-2`` is the one
  before it, as used for the post-instruction tokens of a chat template);
  ``k >= 0`` counts from the first token, BOS included;
* a :class:`Match` — the token holding the last character of a regex match in
  the prompt text, e.g. :data:`FINAL_PERIOD`, the statement's final period
  where the Geometry-of-Truth probes read;
* ``"mean"`` — the mean over the prompt's real tokens, excluding a leading BOS
  (BOS activations are outliers that would dominate the mean).

Indices are in *unpadded* token coordinates; padding is handled by the
collector, so padded slots are never read.

>>> parse_position("-3")
-3
>>> parse_position("period")
Match(pattern='\\\\.', occurrence=-1)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import torch

from .tokens import Encoding

__all__ = ["Match", "FINAL_PERIOD", "Position", "parse_position", "describe", "resolve"]


@dataclass(frozen=True)
class Match:
    """The token holding the last character of the ``occurrence``-th match of ``pattern``.

    ``occurrence=-1`` takes the last match in the text.

    Raises:
        ValueError: an empty or invalid pattern; in :meth:`index`, a pattern not found, an occurrence
            missing, or a match of only the empty string at the end of the text (no token holds it).
    """

    pattern: str
    occurrence: int = -1

    def __post_init__(self):
        if not self.pattern:
            raise ValueError("position pattern is empty ('match:' with nothing after it): write match:REGEX, e.g. "
                             "match:\\. for the last period, or use 'last'")
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ValueError(f"invalid position pattern {self.pattern!r}: {e}") from None

    def index(self, text: str, enc: Encoding, row: int = 0) -> int:
        matches = list(re.finditer(self.pattern, text))
        if not matches:
            raise ValueError(f"position pattern {self.pattern!r} not found in prompt {row}: {text[:80]!r}")
        try:
            m = matches[self.occurrence]
        except IndexError:
            raise ValueError(
                f"prompt {row} has {len(matches)} match(es) of {self.pattern!r}, "
                f"occurrence {self.occurrence} asked for"
            ) from None
        char = m.end() - 1 if m.end() > m.start() else m.start()
        if m.end() == m.start() == len(text):
            raise ValueError(f"position pattern {self.pattern!r} matches only the empty string at the end of prompt "
                             f"{row}, where no token is; use 'last' for the last token, or a pattern that matches "
                             "a character")
        for i, (s, e) in enumerate(enc.spans):
            if s <= char < e:
                return i
        raise ValueError(f"no token covers character {char} of prompt {row} (pattern {self.pattern!r})")


FINAL_PERIOD = Match(r"\.", -1)

Position = Union[str, int, Match]


def parse_position(spec: Position) -> Position:
    """Normalise a position spec (also from CLI strings such as ``"-2"``, ``"period"``, ``"match:REGEX"``)."""
    if isinstance(spec, Match):
        return spec
    if isinstance(spec, bool):
        raise TypeError(f"invalid position {spec!r}")
    if isinstance(spec, int):
        return spec
    if isinstance(spec, str):
        s = spec.strip()
        if s == "last":
            return -1
        if s == "mean":
            return "mean"
        if s in ("period", "final_period"):
            return FINAL_PERIOD
        if s.startswith("match:"):
            return Match(s[len("match:") :])
        try:
            return int(s)
        except ValueError:
            pass
    raise ValueError(
        f"invalid position {spec!r}: use 'last', 'mean', an int offset, 'period', "
        "'match:REGEX' or interp.positions.Match(...)"
    )


def describe(spec: Position) -> str:
    """A stable string form of a position spec, for manifests."""
    spec = parse_position(spec)
    if isinstance(spec, Match):
        return f"match:{spec.pattern}@{spec.occurrence}"
    return str(spec)


def resolve(spec: Position, texts: Sequence[str], encodings: Sequence[Encoding], first: int = 0) -> torch.Tensor:
    """Per-prompt token index in unpadded coordinates; ``-1`` marks ``"mean"``.

    Raises ``ValueError`` naming the prompt when a position does not exist in it
    (prompts are numbered from ``first``, for callers that resolve a long list a
    slice at a time).
    """
    spec = parse_position(spec)
    out = []
    for row, (text, enc) in enumerate(zip(texts, encodings), start=first):
        n = len(enc)
        if spec == "mean":
            if n - int(enc.has_bos) < 1:
                raise ValueError(f"prompt {row} has no token besides BOS to average over")
            out.append(-1)
        elif isinstance(spec, Match):
            out.append(spec.index(text, enc, row))
        else:
            idx = spec + n if spec < 0 else spec
            if not 0 <= idx < n:
                raise ValueError(f"position {spec} does not exist in prompt {row}, which has {n} tokens")
            out.append(idx)
    return torch.tensor(out, dtype=torch.long)
