"""Which prompt sets a run read: :func:`recording` collects a description of every set loaded inside it
(built-in, public-folder or user file), for the manifest of :func:`interp.compare.compare`."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Iterator

from ._promptset import PromptSet

__all__ = ["Recorder", "describe_set", "recording"]


class Recorder:
    """The sets loaded while :func:`recording` is active (``entries``), each tagged with ``section`` as it
    was when the set was loaded; a set loaded twice is listed once per section."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.section: str | None = None
        self._seen: set[tuple] = set()

    def add(self, prompts: PromptSet, split: str) -> None:
        entry = describe_set(prompts, split)
        key = (self.section, entry["name"], split, entry["sha256"])
        if key not in self._seen:
            self._seen.add(key)
            self.entries.append({"section": self.section, **entry})


_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("interp_datasets_recorder", default=None)


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """Within the block, every :func:`~interp.datasets.load`, :meth:`~interp.datasets.PublicSets.load` and
    :func:`~interp.datasets.load_file` result is described in the yielded :class:`Recorder`."""
    recorder = Recorder()
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def record(prompts: PromptSet, split: str = "all") -> PromptSet:
    """Describe ``prompts`` to the active recorder, if any; returns ``prompts``."""
    recorder = _ACTIVE.get()
    if recorder is not None:
        recorder.add(prompts, split)
    return prompts


def describe_set(prompts: PromptSet, split: str = "all") -> dict:
    """``name``, ``split``, ``source``, ``rows``, ``classes`` (counts, or None), ``sha256`` of the rows (texts,
    labels, label names, meta as JSON) and ``row_ids``: the first 16 hex digits of each text's sha256, in order."""
    content = json.dumps([prompts.texts, prompts.labels, prompts.label_names, prompts.meta], sort_keys=True,
                         ensure_ascii=False, default=str)
    return {
        "name": prompts.name,
        "split": split,
        "source": prompts.source,
        "rows": len(prompts),
        "classes": prompts.class_counts() if prompts.labels is not None else None,
        "sha256": hashlib.sha256(content.encode()).hexdigest(),
        "row_ids": [hashlib.sha256(t.encode()).hexdigest()[:16] for t in prompts.texts],
    }
