"""What reproduces a comparison: the manifest ``interp compare`` writes into ``report.json``.

:func:`run_manifest` gathers, for one run:

* ``toolkit``: the package version and, in a git checkout, the commit and whether the tree had changes;
* ``environment``: Python, platform, torch's threads and devices, and the version of every installed
  distribution (``importlib.metadata``);
* ``models``: per model its source (name, path, revision, GGUF origin) and the sha256 and size of each
  weight and config file in its folder (:func:`model_files`); the pair's vocabulary hash, the chat
  template (text and sha256) and the BOS policy;
* ``datasets``: every prompt set the sections loaded (:func:`interp.datasets.recording`): name, split,
  source, class counts, a sha256 of its rows and the id of each row (the first 16 hex digits of the
  sha256 of its text), so the exact train/test rows are known; ``data_files``: the sha256 of every file
  of the datasets folder passed with ``--data`` and of every user file;
* ``config``: the concepts in run order, every section's options (defaults filled in), the datasets
  folder and device; ``seeds``: the seed options among them; ``command``: the command line, when run
  from ``interp``;
* ``started``, ``finished`` (UTC, ISO 8601) and, beside the manifest, ``wall_time_s`` per section.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["environment", "file_sha256", "folder_sha256", "model_files", "now", "run_manifest", "toolkit"]

#: Files of a model folder the manifest hashes: the weights and what decides how they are read.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".json", ".model", ".txt", ".jinja")
_CHUNK = 1 << 22


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 4 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_sha256(folder: str | os.PathLike) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``folder`` (sorted; hidden files left out)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def toolkit() -> dict:
    """The toolkit's version, and its git commit (with ``dirty``: uncommitted changes) when it runs from a
    git checkout; ``git_commit`` is None otherwise."""
    import interp

    root = Path(interp.__file__).resolve().parent.parent
    out = {"version": interp.__version__, "git_commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            out.update(git_commit=commit.stdout.strip(), dirty=bool(status.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def environment() -> dict:
    """Python, platform, torch's threads and devices, and ``dependencies``: every installed distribution's
    version (``importlib.metadata``), sorted by name."""
    from importlib.metadata import distributions

    import torch

    deps = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name:
            deps[name.lower()] = d.version
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "dependencies": dict(sorted(deps.items())),
    }


def model_files(model) -> dict:
    """A booted model's source and the sha256 of each file of its folder that the weights are read from
    (:data:`MODEL_FILE_SUFFIXES`): ``{"name", "path", "revision", "gguf", "files": {name: {"sha256",
    "bytes"}}}``. A model booted from the hub cache or without a folder lists no files (``files`` empty,
    ``note`` says why)."""
    source = dict(getattr(model, "interp_source", {}) or {})
    out = {k: source.get(k) for k in ("name", "path", "revision")}
    if "gguf" in source:
        out["gguf"] = source["gguf"]
    path = Path(source["path"]) if source.get("path") else None
    if path is None or not path.is_dir():
        out["files"], out["note"] = {}, "no local folder: the weights were not hashed"
        return out
    out["files"] = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in sorted(path.iterdir())
                    if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES}
    return out


def _bos_policy(pair) -> dict:
    tok = pair.tokenizer
    return {"bos_token": getattr(tok, "bos_token", None),
            "policy": "a BOS token is prepended unless the text (e.g. a chat template's) starts with it "
                      "(interp.tokens.encode)"}


def run_manifest(pair, *, config: dict, datasets: list[dict], data_files: dict, started: str,
                 command: list[str] | None = None, models: dict | None = None) -> dict:
    """The manifest of one comparison run (module docstring); ``config`` holds ``concepts`` and ``options``
    (``{section: {option: value}}``, every option), ``datasets`` the recorded prompt sets, ``models`` (if given)
    :func:`model_files` of ``{"base", "post"}`` already computed (hashing the weights again is skipped)."""
    import hashlib as _h

    info = pair.info()
    template = pair.chat_template
    seeds = {section: {k: v for k, v in opts.items() if k in ("seed", "random_state")}
             for section, opts in config.get("options", {}).items()}
    return {
        "toolkit": toolkit(),
        "environment": environment(),
        "models": models if models is not None else {"base": model_files(pair.base),
                                                     "post": model_files(pair.post)},
        "vocab_sha256": info["vocab_sha256"],
        "prompt_template": {"chat_template": template,
                            "sha256": _h.sha256(template.encode()).hexdigest() if template else None},
        "bos": _bos_policy(pair),
        "datasets": datasets,
        "data_files": data_files,
        "config": config,
        "seeds": {k: v for k, v in seeds.items() if v},
        "command": command,
        "started": started,
        "finished": now(),
    }
