"""interp.datasets stays light: no torch, transformers or scikit-learn at import or when loading."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# ``interp/__init__.py`` imports the model side of the toolkit (torch); stand in
# for it with an empty package so that only interp.datasets itself is measured.
SCRIPT = """
import json, sys, types
pkg = types.ModuleType("interp")
pkg.__path__ = [sys.argv[1]]
sys.modules["interp"] = pkg
import interp.datasets as d
for name in ("truth", "harmful", "harmless", "languages", "refusal"):
    d.load(name, "test")
d.PromptSet.from_classes("s", {"a": ["x"]}).map_texts(str.upper)
heavy = ("torch", "transformers", "transformer_lens", "sklearn", "numpy", "pandas")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_datasets_import_no_heavy_modules():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / "interp")],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=60,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
