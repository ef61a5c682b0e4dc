"""The toolkit's progress bar: ``tqdm.auto``'s (a widget in Jupyter) where ipywidgets is installed, the text bar
otherwise. ``tqdm.auto`` in a notebook without ipywidgets warns "IProgress not found" on every bar before falling
back to the text bar; this picks the text bar at once."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm.std import tqdm

__all__ = ["tqdm"]
