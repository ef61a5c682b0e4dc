"""GGUF checkpoints (llama.cpp's format) booted through a cached safetensors folder.

A ``.gguf`` file holds quantised weights, the config and the tokenizer (chat
template included) in one file. The toolkit boots models only from folders of
safetensors and JSON (see :mod:`interp.models`), so :func:`convert_gguf`
dequantises a GGUF file once through transformers' GGUF support
(``from_pretrained(folder, gguf_file=name, dtype=...)``; the dequantisation
itself is ``gguf.dequantize``) and writes a normal Hugging Face folder into a
cache. Later loads of the same file (same bytes, same dtype) boot that folder
directly; only safetensors and JSON are ever read back from it.

The cache lives in ``cache_dir`` if given, else ``$INTERP_CACHE/gguf``, else
``~/.cache/interp/gguf``, with one folder per ``<sha256 of the file>-<dtype>``.
A folder is written under a temporary name and renamed into place only when
complete, so an interrupted conversion never leaves a folder that a later load
trusts (a killed process may leave a ``.tmp-*`` folder, which is never read and
may be deleted).

The weights are the *dequantised* ones: a Q4 model converted to float32 is the
Q4 model's numerics in float32, not the original full-precision checkpoint.

>>> convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32)   # doctest: +SKIP
PosixPath('/home/me/.cache/interp/gguf/5d2c...-float32')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["convert_gguf", "default_cache_dir", "gguf_header", "file_sha256"]

log = logging.getLogger(__name__)

#: Written last into a converted folder; its presence marks a complete conversion.
MARKER = "interp_gguf.json"

# Keys of transformers' GGUF config mapping that are metadata sections, not architectures.
_NOT_ARCHITECTURES = {"general", "tokenizer"}


def default_cache_dir() -> Path:
    """``$INTERP_CACHE/gguf`` if ``INTERP_CACHE`` is set, else ``~/.cache/interp/gguf``."""
    root = os.environ.get("INTERP_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "interp") / "gguf"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex); memoised per process by path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _new_loader_archs() -> set[str]:
    """Architectures transformers' newer GGUF loader (``integrations/gguf``) handles itself."""
    try:
        from transformers.integrations.gguf.gguf_conversion_mapping import GGUF_ARCHS
    except ImportError:  # transformers releases before that loader
        return set()
    return set(GGUF_ARCHS)


def supported_architectures() -> list[str]:
    """GGUF ``general.architecture`` values transformers reads: its legacy loader's
    (``modeling_gguf_pytorch_utils.GGUF_SUPPORTED_ARCHITECTURES``) and its newer loader's
    (``integrations.gguf.gguf_conversion_mapping.GGUF_ARCHS``)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted((set(GGUF_SUPPORTED_ARCHITECTURES) - _NOT_ARCHITECTURES) | _new_loader_archs())


@lru_cache(maxsize=None)
def _can_dequantize(type_name: str, new_loader: bool) -> bool:
    """Whether transformers can dequantise a tensor of this GGML type.

    The legacy loader (llama, gemma3, ... in transformers 5.24) calls
    ``gguf.dequantize`` per tensor; it is asked directly on one zero block, so
    the answer follows the installed ``gguf`` release. The newer loader has its
    own table (``integrations.gguf.dequant.GGML_NAME``) besides F32/F16/BF16.
    """
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize

    if new_loader:
        from transformers.integrations.gguf.dequant import GGML_NAME

        return type_name in {"F32", "F16", "BF16", *GGML_NAME.values()}
    qtype = GGMLQuantizationType[type_name]
    _, type_size = GGML_QUANT_SIZES[qtype]
    try:
        dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
    except NotImplementedError:
        return False
    return True


def gguf_header(path: str | os.PathLike) -> dict:
    """Architecture, tensor types and model name from a GGUF file's header (no weights are read).

    Returns ``{"architecture": str, "name": str | None, "tensor_types": {type: count}}``.

    Raises:
        ValueError: the file is not a readable GGUF file or has no architecture.
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))  # memory-maps the file; tensors are not dequantised
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a GGUF file we can read"
        raise ValueError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e})") from e
    fields = reader.fields
    if "general.architecture" not in fields:
        raise ValueError(f"{path} has no general.architecture field; cannot tell which model it holds")
    name = fields["general.name"].contents() if "general.name" in fields else None
    return {
        "architecture": str(fields["general.architecture"].contents()),
        "name": name,
        "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors)),
    }


def _transformers_name(arch: str, supported: list[str]) -> str | None:
    """The name transformers' GGUF loader reads ``arch`` as, or ``None`` if it does not read it.

    llama.cpp spells a few architectures differently (``qwen2moe``, ``gpt-oss``,
    ``minimax-m2``); transformers' ``load_gguf_checkpoint`` renames those before
    checking them against the same list.
    """
    for name in (arch, arch.replace("-", "_"), re.sub(r"(?<!_)moe$", "_moe", arch)):
        if name in supported:
            return name
    return None


def _hf_architecture(model_type: str) -> str | None:
    """The causal-LM class transformers builds from a GGUF file of ``model_type``.

    Gemma 3/4 GGUF files hold only the text model, which transformers loads with
    a ``*_text`` config (``Gemma3ForCausalLM``), not the multimodal class.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as names

    return names.get(f"{model_type}_text") or names.get(model_type)


def check_gguf(path: str | os.PathLike) -> dict:
    """Refuse, before any conversion, a GGUF file the toolkit cannot boot; return its header.

    Raises:
        ValueError: the architecture is not one transformers' GGUF integration
            reads, the model class it maps to is not one TransformerLens can
            boot, or a tensor's type is one ``gguf.dequantize`` cannot dequantise.
    """
    header = gguf_header(path)
    arch = header["architecture"]
    supported = supported_architectures()
    model_type = _transformers_name(arch, supported)
    if model_type is None:
        raise ValueError(
            f"{path}: GGUF architecture {arch!r} is not supported by transformers' GGUF loader "
            f"(supported: {', '.join(supported)})"
        )
    new_loader = model_type in _new_loader_archs()
    if new_loader:  # its config builder names the model type (e.g. qwen35 -> qwen3_5_text)
        from transformers.integrations.gguf import get_gguf_config, read_gguf_metadata

        metadata, tensor_names = read_gguf_metadata(str(path))
        model_type = get_gguf_config(metadata, tensor_names).get("model_type", model_type)
    hf_arch = _hf_architecture(model_type)
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    if hf_arch is None or hf_arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{path}: GGUF architecture {arch!r} loads in transformers as {hf_arch or model_type!r}, "
            "which TransformerLens' TransformerBridge cannot boot"
        )
    types = header["tensor_types"]
    bad = sorted(t for t in types if not _can_dequantize(t, new_loader))
    if bad:
        counts = ", ".join(f"{t} ({types[t]} tensors)" for t in bad)
        raise ValueError(
            f"{path}: GGUF tensor type(s) {counts} cannot be dequantised by transformers' GGUF loader for "
            f"architecture {arch!r} (types in this file: {', '.join(sorted(types))}); re-quantise the model "
            "to a supported type such as Q8_0, Q4_K or F16"
        )
    header["hf_architecture"] = hf_arch
    return header


def _dtype_name(dtype: torch.dtype) -> str:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return str(dtype).removeprefix("torch.")


def convert_gguf(
    path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Hugging Face safetensors folder of a GGUF file, converted once and cached.

    Args:
        path: a ``.gguf`` file.
        dtype: dtype the weights are dequantised to and saved in.
        cache_dir: where converted folders live; default :func:`default_cache_dir`.

    Returns:
        ``cache_dir/<sha256 of the file>-<dtype>/`` holding ``config.json``,
        ``generation_config.json``, ``model.safetensors``, the tokenizer files
        and ``chat_template.jinja`` when the file carries a template, plus
        ``interp_gguf.json`` (source file, sha256, header, versions).

    Cost: hashing the file (about 1 s per GB, once per process); on a cache miss
    the conversion, measured on 2 shared CPU cores: 40-80 s for SmolLM2-135M,
    80-135 s for Gemma-3-270M (its 262k-token vocabulary), and disk for the
    dequantised weights (4 bytes per parameter in float32: 0.5 and 1.1 GB).

    Checked on real files: Q4_1 with a Q8_0 and F32 tensors (SmolLM2-135M-Instruct,
    llama architecture) and Q4_K_M, i.e. Q4_K/Q5_0/Q6_K/Q8_0/F32 tensors
    (google/gemma-3-270m, gemma3 architecture; transformers builds it as
    ``Gemma3ForCausalLM`` with a ``gemma3_text`` config).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: not a GGUF file; an architecture transformers' GGUF loader
            or TransformerLens does not support; a tensor type that cannot be
            dequantised; a non-floating ``dtype``. Checked from the header,
            before anything is converted.
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist or is not a file")
    dtype_name = _dtype_name(dtype)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    sha = file_sha256(src)
    out = root / f"{sha}-{dtype_name}"
    if (out / MARKER).is_file():
        log.info("GGUF %s: using cached conversion %s", src, out)
        return out
    if out.exists():
        # Only a complete folder is ever renamed into place; anything else here was not made by us.
        raise ValueError(f"{out} exists but is not a complete GGUF conversion (no {MARKER}); delete it")
    header = check_gguf(src)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=root))
    # mkdtemp makes the folder private (0700); a converted model in a shared cache is readable by all, as any
    # folder the user would create (umask applies)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        t0 = time.perf_counter()
        _convert_into(src, tmp, dtype)
        meta = {
            "source": str(src.resolve()), "sha256": sha, "dtype": dtype_name, "header": header,
            "seconds": round(time.perf_counter() - t0, 1), "versions": _versions(),
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=2, default=str))
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / MARKER).is_file():
                raise
            log.info("GGUF %s: another process finished the same conversion first", src)
        else:
            log.info("GGUF %s: converted to %s in %.1f s", src, out, meta["seconds"])
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert_into(src: Path, out: Path, dtype: torch.dtype) -> None:
    """Dequantise ``src`` with transformers and save it as safetensors + tokenizer into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(src.parent), src.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # dequantize=True: where transformers could keep the weights packed (its newer loader, with a
    # matmul kernel installed) it would give GGUF modules instead of plain dense weights.
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    # save_pretrained refuses a model loaded from GGUF ("quantized with gguf and is not
    # serializable"): rebuild a plain model of the same config and move the weights over.
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    pickles = [p.name for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if pickles:  # never expected; the toolkit reads back only safetensors and JSON
        raise RuntimeError(f"conversion wrote pickle files {pickles}")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import transformers

    return {"transformers": transformers.__version__, "gguf": version("gguf"), "torch": torch.__version__}
