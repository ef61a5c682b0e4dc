"""Real parallel text in English, French, German and Spanish: Django's translated messages.

No public set of translated *sentences* is in the shared datasets folder, and nothing may be
downloaded, so the ``languages`` set of :class:`~interp.datasets.PublicSets` comes from the one
real, human-translated parallel corpus that installs from the package index: the gettext message
catalogues Django ships (``django/conf/locale`` and ``django/contrib/*/locale``, BSD licence),
written by Django's translators. Each English message (``msgid``) and its French, German and
Spanish translations (``msgstr``) are one parallel group, e.g.::

    en  A user with that username already exists.
    fr  Un utilisateur avec ce nom existe déjà.
    de  Dieser Benutzername ist bereits vergeben.
    es  Ya existe un usuario con este nombre.

Kept: messages of :data:`MIN_WORDS` to :data:`MAX_WORDS` words translated in all three languages, without
context, plural forms or placeholders (``%s``, ``{name}``, HTML) in any of the four texts. The
compiled ``.mo`` catalogues are read (with Babel's :func:`babel.messages.mofile.read_mo`), so
translations the translators marked fuzzy are already left out, as gettext itself does.

Software interface messages are a narrow register (forms, errors, admin pages); what a language
direction or a LAPE neuron found on them means for other text is a question for the reader.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._promptset import PromptSet
from ._stable import ranked, stable_hash

__all__ = ["LANGUAGES", "MAX_WORDS", "MIN_WORDS", "OPENING_WORDS", "django_parallel"]

#: The languages of the set, English first; a row's label indexes this tuple.
LANGUAGES = ("en", "fr", "de", "es")
#: A message is kept when its English text has from ``MIN_WORDS`` to ``MAX_WORDS`` words.
MIN_WORDS = 4
MAX_WORDS = 16
#: ``meta["opening"]``: the first words of each text, the prefix the language section reads and steers.
OPENING_WORDS = 3
_TEST_FRACTION = 0.25
_MARKUP = re.compile(r"[%{}<>]")


def _catalogue(root: Path, lang: str) -> dict[str, tuple[str, str]]:
    """``{English message: (translation, catalogue path)}`` over every Django catalogue of ``lang``."""
    from babel.messages.mofile import read_mo

    out: dict[str, tuple[str, str]] = {}
    for mo in sorted(root.glob(f"**/locale/{lang}/LC_MESSAGES/django.mo")):
        with open(mo, "rb") as f:
            catalogue = read_mo(f)
        for m in catalogue:
            if isinstance(m.id, str) and m.id and isinstance(m.string, str) and m.string and not m.context:
                out.setdefault(m.id, (m.string, str(mo.relative_to(root.parent))))
    return out


def django_parallel(split: str) -> PromptSet:
    """The parallel set (see the module docstring): four rows per message, label = index in :data:`LANGUAGES`.

    ``meta``: ``language``, ``pair_id`` (the message's index, shared by its four rows), ``group``,
    ``opening`` (the first :data:`OPENING_WORDS` words) and ``catalogue`` (the ``.mo`` file read).
    A quarter of the messages (by sha256 of the English text) is the test split.

    Args:
        split: ``train``, ``test`` or ``all``.

    Raises:
        ModuleNotFoundError: django or babel is not installed.
        ValueError: an unknown split.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    try:
        import babel  # noqa: F401  (read_mo below)
        import django
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the real parallel text (Django's message catalogues) needs django and babel "
                                  f"(pip install 'interp[real]'): {e}") from e
    root = Path(django.__file__).parent
    cats = {lang: _catalogue(root, lang) for lang in LANGUAGES[1:]}
    common = sorted(set.intersection(*(set(c) for c in cats.values())))
    kept = [m for m in common if MIN_WORDS <= len(m.split()) <= MAX_WORDS and not _MARKUP.search(m)
            and not any(_MARKUP.search(c[m][0]) for c in cats.values())]
    test = set(ranked(kept, "django-parallel")[: round(_TEST_FRACTION * len(kept))])
    texts, labels, meta = [], [], []
    for pair_id, message in enumerate(kept):
        if split != "all" and (message in test) != (split == "test"):
            continue
        for k, lang in enumerate(LANGUAGES):
            text, where = (message, cats["fr"][message][1]) if lang == "en" else cats[lang][message]
            texts.append(text)
            labels.append(k)
            meta.append({"language": lang, "pair_id": pair_id, "group": f"msg:{stable_hash(message):016x}",
                         "opening": " ".join(text.split()[:OPENING_WORDS]),
                         "catalogue": where})
    return PromptSet(name=f"languages/{split}", texts=tuple(texts), labels=tuple(labels), label_names=LANGUAGES,
                     meta=tuple(meta), source=f"django {django.__version__} message catalogues "
                                                 f"({len(kept)} messages in en/fr/de/es)")
