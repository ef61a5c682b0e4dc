"""Collected activations and their on-disk store.

An :class:`Activations` holds, for each site, a ``[n_samples, layer, d]`` tensor
(one row per prompt, one slot per collected layer) together with the prompts,
their labels and metadata, the exact token ids that were run, the token index
each row was read from, and a manifest of how it was produced.

It lives either in memory or in a store folder::

    DIR/manifest.json             how the rows were made, and which shards are complete
    DIR/prompts.json              texts, labels, label names, per-row metadata
    DIR/shard-00000.safetensors   rows [start, stop): one tensor per site,
                                  token ids and read positions

Each file is written atomically (see :mod:`interp._io`) and a shard is listed
in the manifest only after it is on disk, so a store interrupted at any point
holds only whole shards; :func:`interp.collect` resumes it where it stopped.
Reading a store goes shard by shard, so :meth:`Activations.layer` needs memory
for one layer of the data only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import safe_open

from ._io import save_safetensors, write_json
from .datasets import PromptSet

__all__ = ["Activations", "FORMAT"]

FORMAT = "interp.activations/1"
MANIFEST = "manifest.json"
PROMPTS = "prompts.json"


def prompts_digest(prompts: PromptSet) -> str:
    """sha256 of the texts and labels, used to refuse resuming onto other prompts."""
    # The sha256 of json.dumps([texts, labels], ensure_ascii=False), fed piece by
    # piece so the JSON text of every prompt is never held at once.
    h = hashlib.sha256()
    pieces = json.JSONEncoder(ensure_ascii=False).iterencode([list(prompts.texts), list(prompts.labels or [])])
    for piece in pieces:
        h.update(piece.encode())
    return h.hexdigest()


def _prompts_to_json(prompts: PromptSet) -> dict:
    return {
        "name": prompts.name,
        "source": prompts.source,
        "texts": list(prompts.texts),
        "labels": None if prompts.labels is None else list(prompts.labels),
        "label_names": None if prompts.label_names is None else list(prompts.label_names),
        "meta": None if prompts.meta is None else list(prompts.meta),
    }


def _prompts_from_json(d: dict) -> PromptSet:
    return PromptSet(
        name=d["name"],
        texts=tuple(d["texts"]),
        labels=None if d["labels"] is None else tuple(d["labels"]),
        label_names=None if d["label_names"] is None else tuple(d["label_names"]),
        meta=None if d["meta"] is None else tuple(d["meta"]),
        source=d.get("source", ""),
    )


def shard_tensors(
    site_rows: dict[str, torch.Tensor], token_ids: list[tuple[int, ...]], token_index: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Tensors of one shard: ``site:<name>`` rows, flat token ids and per-row lengths."""
    out = {f"site:{s}": t for s, t in site_rows.items()}
    out["token_ids"] = torch.tensor([i for ids in token_ids for i in ids], dtype=torch.int64)
    out["n_tokens"] = torch.tensor([len(ids) for ids in token_ids], dtype=torch.int64)
    out["token_index"] = token_index.to(torch.int64)
    return out


class Activations:
    """Per-site activations ``[n_samples, layer, d]`` with the prompts they came from.

    Build one with :func:`interp.collect` or :meth:`load`; do not call the
    constructor directly.

    Attributes:
        prompts: the :class:`~interp.datasets.PromptSet` that was run (texts,
            labels, metadata), in row order.
        sites: collected site names (see :mod:`interp.sites`).
        layers: collected block indices; slot ``i`` of the layer axis holds
            block ``layers[i]``.
        token_index: ``[n_samples]`` unpadded index of the token each row was
            read from (``-1`` for a mean over tokens).
        manifest: how the rows were produced (model, tokenisation, position,
            versions) as a JSON-ready dict.
    """

    def __init__(
        self,
        *,
        manifest: dict,
        prompts: PromptSet,
        tensors: dict[str, torch.Tensor] | None = None,
        token_ids: list[tuple[int, ...]] | None = None,
        token_index: torch.Tensor | None = None,
        root: Path | None = None,
    ):
        self.manifest = manifest
        self.prompts = prompts
        self.sites: tuple[str, ...] = tuple(manifest["sites"])
        self.layers: tuple[int, ...] = tuple(manifest["layers"])
        self._tensors = tensors
        self._token_ids = token_ids
        self._token_index = token_index
        self.root = root

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def n_samples(self) -> int:
        return len(self.prompts)

    @property
    def texts(self) -> tuple[str, ...]:
        return self.prompts.texts

    @property
    def labels(self) -> torch.Tensor | None:
        """``[n_samples]`` integer labels, or ``None`` for unlabelled prompts."""
        if self.prompts.labels is None:
            return None
        return torch.tensor(self.prompts.labels, dtype=torch.long)

    @property
    def disk_backed(self) -> bool:
        return self._tensors is None

    def __repr__(self) -> str:
        widths = {s: self.manifest["sites"][s]["width"] for s in self.sites}
        where = f"store {str(self.root)!r}" if self.disk_backed else "memory"
        return (
            f"Activations({self.n_samples} prompts x {len(self.layers)} layers, sites {widths}, "
            f"position {self.manifest['position']!r}, model {self.manifest['model']['name']!r}, in {where})"
        )

    def _slot(self, layer: int) -> int:
        """The slot of block ``layer``; a negative one counts from the model's last block, as in
        :func:`interp.collect` (``-1``: block ``n_layers - 1``)."""
        n_layers = (self.manifest.get("model") or {}).get("n_layers")
        block = layer + n_layers if isinstance(layer, int) and layer < 0 and n_layers else layer
        try:
            return self.layers.index(block)
        except ValueError:
            shown = f"layer {layer}" + (f" (block {block})" if block != layer else "")
            raise ValueError(f"{shown} was not collected; collected layers: {list(self.layers)}") from None

    def _check_site(self, site: str) -> None:
        if site not in self.sites:
            raise KeyError(f"site {site!r} was not collected; collected sites: {list(self.sites)}")

    # ------------------------------------------------------------ reading data
    def _shards(self) -> list[dict]:
        return self.manifest["shards"]

    def iter_shards(self, site: str) -> Iterator[tuple[int, Float[torch.Tensor, "rows layer d"]]]:
        """Yield ``(first_row, rows)`` chunks of ``site`` in row order."""
        self._check_site(site)
        if not self.disk_backed:
            yield 0, self._tensors[site]
            return
        for shard in self._shards():
            with safe_open(self.root / shard["file"], framework="pt") as f:
                yield shard["start"], f.get_tensor(f"site:{site}")

    def __getitem__(self, site: str) -> Float[torch.Tensor, "n_samples layer d"]:
        """All rows of ``site``; for a store this reads every shard into memory."""
        self._check_site(site)
        if not self.disk_backed:
            return self._tensors[site]
        return torch.cat([t for _, t in self.iter_shards(site)], dim=0)

    def layer(self, site: str, layer: int) -> Float[torch.Tensor, "n_samples d"]:
        """Rows of ``site`` at block ``layer`` (negative: counted from the model's last block, as in
        ``collect``); from a store, only that layer is read."""
        self._check_site(site)
        slot = self._slot(layer)
        if not self.disk_backed:
            return self._tensors[site][:, slot]
        parts = []
        for shard in self._shards():
            with safe_open(self.root / shard["file"], framework="pt") as f:
                parts.append(f.get_slice(f"site:{site}")[:, slot])
        return torch.cat(parts, dim=0)

    def _load_tokens(self) -> None:
        ids, index = [], []
        for shard in self._shards():
            with safe_open(self.root / shard["file"], framework="pt") as f:
                flat, lengths = f.get_tensor("token_ids").tolist(), f.get_tensor("n_tokens").tolist()
                index.append(f.get_tensor("token_index"))
            pos = 0
            for n in lengths:
                ids.append(tuple(flat[pos : pos + n]))
                pos += n
        self._token_ids, self._token_index = ids, torch.cat(index)

    @property
    def token_ids(self) -> list[tuple[int, ...]]:
        """Exact token ids run for each prompt (BOS included, no padding)."""
        if self._token_ids is None:
            self._load_tokens()
        return self._token_ids

    @property
    def token_index(self) -> torch.Tensor:
        if self._token_index is None:
            self._load_tokens()
        return self._token_index

    # --------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> Path:
        """Write this object as a one-shard store at ``path`` (a folder, new or empty).

        Raises:
            FileExistsError: ``path`` already holds activations.
            ValueError: ``path`` is a file, or a folder that is not empty and holds no activation store
                (its files would be mixed with the store's).
        """
        root = Path(path)
        if (root / MANIFEST).exists():
            raise FileExistsError(f"{root} already holds activations; choose another folder")
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root} is a file; Activations.save writes a store folder: give a new or empty folder")
        if root.is_dir() and any(root.iterdir()):
            raise ValueError(f"{root} is not empty and holds no activation store; choose an empty or new folder")
        tensors = {s: self[s] for s in self.sites}
        save_safetensors(root / "shard-00000.safetensors", shard_tensors(tensors, self.token_ids, self.token_index))
        write_json(root / PROMPTS, _prompts_to_json(self.prompts))
        manifest = dict(self.manifest)
        manifest["shards"] = [{"file": "shard-00000.safetensors", "start": 0, "stop": self.n_samples}]
        manifest["complete"] = True
        write_json(root / MANIFEST, manifest)
        return root

    @classmethod
    def load(cls, path: str | os.PathLike) -> Activations:
        """Open a store folder lazily (nothing but JSON is read until data is asked for).

        Raises:
            FileNotFoundError: no manifest in ``path``.
            ValueError: the store is incomplete (an interrupted collection:
                run :func:`interp.collect` again with the same ``out=`` to
                finish it) or not of this format.
        """
        root = Path(path)
        manifest = read_manifest(root)
        if manifest is None:
            raise FileNotFoundError(f"no {MANIFEST} in {root}: not an activation store")
        if not manifest.get("complete"):
            done = sum(s["stop"] - s["start"] for s in manifest["shards"])
            raise ValueError(
                f"the store in {root} is incomplete ({done} of {manifest['n_samples']} rows): "
                "run interp.collect again with the same out= folder to resume it"
            )
        with open(root / PROMPTS, encoding="utf-8") as f:
            prompts = _prompts_from_json(json.load(f))
        return cls(manifest=manifest, prompts=prompts, root=root)


def read_manifest(root: Path) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the folder is not a usable activation store") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an activation store manifest (format {manifest.get('format')!r})")
    return manifest
