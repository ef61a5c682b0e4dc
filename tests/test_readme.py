"""The README's Python examples run as written on the bundled pair: every ```python block, in order, in one
namespace (as a reader pasting them into one notebook would), in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_python_blocks_run_on_the_bundled_pair(tmp_path, monkeypatch):
    code = blocks()
    assert len(code) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    from interp.compare import _section

    try:
        for i, block in enumerate(code):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    finally:
        _section._REGISTERED.pop("mine", None)  # the README's own section stays out of the other tests
    assert (tmp_path / "refusal.safetensors").is_file() and (tmp_path / "report-mine" / "report.json").is_file()
    assert namespace["acts"]["resid_post"].shape[1] == namespace["pair"].base.cfg.n_layers
