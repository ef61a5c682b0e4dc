"""Prompt sets: the toolkit's built-in sets and loaders for common public formats.

>>> from interp import datasets
>>> datasets.available()
['truth', 'harmful', 'harmless', 'languages', 'refusal', 'organism/truth', 'organism/harmful', 'organism/harmless', 'organism/refusal', 'organism/languages']
>>> refusal = datasets.load("refusal", split="test")
>>> refusal.label_names
('harmless', 'harmful')
"""

from ._builtin import available, describe, load
from ._files import FORMATS, load_file
from ._promptset import PromptSet

__all__ = ["FORMATS", "PromptSet", "available", "describe", "load", "load_file"]
