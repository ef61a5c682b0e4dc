"""Every notebook in notebooks/ executes top to bottom (outputs are not committed) and uses the public API only."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    # each notebook writes its report into its own folder (git-ignored: notebooks/reports/)
    assert (tmp_path / "reports" / path.stem / "report.html").exists() or "01_" not in path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_the_public_api(path):
    """No private module of the toolkit (``interp.organism._corpus``, ``interp.datasets._world``, ...)."""
    import re

    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert not re.findall(r"(?:from|import)\s+(?:interp|probes|steering)(?:\.\w+)*\._\w+|import _\w+", code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_name_a_notebook_imports_is_documented(path):
    """Each name a notebook imports from the toolkit appears in README.md or docs/: a notebook shows the documented
    API, not a module's internals that happen to lack an underscore."""
    import re

    root = Path(__file__).resolve().parents[1]
    documented = (root / "README.md").read_text() + "".join(p.read_text() for p in (root / "docs").glob("*.md"))
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    imported = [name.strip() for _, names in re.findall(r"^from\s+((?:interp|probes|steering)[\w.]*)\s+import\s+"
                                                          r"([^\n#]+)", code, re.M) for name in names.split(",")]
    assert imported  # the pattern reads the notebook's imports
    # named as code (inline or in a code block), not as a word of prose ("figures")
    code_spans = " ".join(re.findall(r"```.*?```|`[^`\n]+`", documented, re.S))
    assert [n for n in imported if not re.search(rf"\b{re.escape(n)}\b", code_spans)] == []
