"""Atomic writes: a reader never sees a half-written file.

Each writer writes to a temporary file in the destination folder, flushes it to
disk, and renames it over the destination (``os.replace`` is atomic on POSIX
and Windows). If writing fails (a full disk, an interruption), the temporary
file is removed and the destination keeps its previous content.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file as _st_save_file

__all__ = ["atomic_write_bytes", "write_json", "save_safetensors"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, flush it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path: str | os.PathLike, obj) -> None:
    # json.dump streams the text to the file: a large object (every prompt of a
    # collection) is never held a second time as one string.
    with _atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


def save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    # save_file writes the tensors' memory straight to the file; safetensors.torch.save
    # would first build the whole file in memory (twice: its buffer and the bytes copy).
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with _atomic_file(path) as tmp:
        _st_save_file(tensors, tmp, metadata=metadata)
