"""Prompt sets: the toolkit's built-in sets and loaders for common public formats.

* :class:`PromptSet`: texts with optional integer labels, label names and
  per-row metadata; subsetting, stratified splits, :meth:`PromptSet.map_texts`.
* :func:`load`: a built-in set (:func:`available`, :func:`describe`), written
  for this project from the tables in :mod:`interp.datasets._world` and
  :mod:`interp.datasets._facts`, with fixed leak-free train/test splits.
* :func:`load_file`: a user file: Geometry-of-Truth CSV, AdvBench/Alpaca
  instruction JSON, SNMF prompt/label JSON, any JSONL/CSV with a text and a
  label column, or facts (``prompt``, ``subject``, ``answer``) (:data:`FORMATS`).
* :class:`PublicSets`: the comparison's truth, refusal and SNMF sets drawn
  from a folder of the published datasets (Geometry of Truth, Arditi et
  al.'s refusal splits, the SNMF concepts), with fixed splits.
* :class:`UserSets`: a researcher's own files in place of a section's sets
  (``interp compare --truth-data FILE``), split train/test by group.
* :func:`recording`: which sets were loaded inside a block, with a hash and
  row ids for each (what a comparison's manifest lists).

Importing this package loads neither torch nor transformers; scikit-learn is
imported only by :meth:`PromptSet.split`.

>>> from interp import datasets
>>> datasets.available()
['truth', 'harmful', 'harmless', 'languages', 'facts', 'refusal', 'organism/truth', 'organism/harmful', 'organism/harmless', 'organism/refusal', 'organism/languages', 'organism/facts']
>>> refusal = datasets.load("refusal", split="test")
>>> refusal.label_names, refusal.class_counts()
(('harmless', 'harmful'), {'harmless': 70, 'harmful': 70})
>>> fact = datasets.load("facts", split="test")[0]["meta"]
>>> fact["subject"], fact["answer"], len(fact["alternatives"]), fact["relation"]
('France', ' Paris', 3, 'capital')
"""

from ._builtin import available, describe, load
from ._files import FORMATS, load_file
from ._promptset import PromptSet
from ._public import PublicSets
from ._record import describe_set, recording
from ._user import UserSets

__all__ = ["FORMATS", "PromptSet", "PublicSets", "UserSets", "available", "describe", "describe_set", "load",
           "load_file", "recording"]
