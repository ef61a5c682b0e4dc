"""Rows of the built-in ``facts`` set and of ``organism/facts``: prompts that end right before a known answer.

Each row's ``meta`` holds

* ``subject``: the words the fact is about, occurring exactly once in the prompt (``"France"``);
* ``answer``: the correct continuation with its leading space (``" Paris"``); the *answer token* of a
  model is the first token of ``answer`` under its tokenizer;
* ``alternatives``: three wrong answers of the same relation (other subjects' answers), drawn with
  :func:`~._stable.ranked` so they are the same on every machine, none equal to the answer;
* ``relation``: ``capital``, ``city_country``, ``country_language`` or ``element_symbol``;
* ``group``: ``f"{relation}:{subject}"``, shared by the phrasings of one fact (they stay in one split).

Every answer starts with an ASCII letter other than Q, X and Z, and the answer and its alternatives
start with four different letters (:func:`pick_alternatives`). Byte-level and SentencePiece BPE
tokenizers (GPT-2, Llama, Gemma) have a token for a space followed by each of those letters, so the
first tokens of the four options differ under them; the model organism's 1024-token vocabulary has
none for `` Q``, `` X``, `` Z`` or a space before a non-ASCII letter (its first token would be a bare
space), hence the exclusions. ``tests/datasets/test_facts.py`` checks the first tokens with the
model organism's tokenizer and, where it is cached, the Gemma-3 one. No answer starts with an article
(``the United Kingdom``), which would make every such answer's first token `` the``.

The tables are written for this project from general knowledge and hold uncontroversial facts only:
no country with two capitals or a disputed one, no country whose main language is disputed, no answer
that repeats its subject (Mexico City, Luxembourg).
"""

from __future__ import annotations

from . import _world as W
from ._stable import Row, ranked

__all__ = [
    "CAPITALS", "LANGUAGE_OF", "ELEMENT_SYMBOLS", "RELATIONS", "TEMPLATES", "N_ALTERNATIVES", "CLEAN_INITIALS",
    "fact_rows", "organism_fact_rows", "pick_alternatives", "fact_meta",
]

#: Wrong answers drawn for each fact.
N_ALTERNATIVES = 3

#: (country, capital).
CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Greece", "Athens"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Hungary", "Budapest"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"),
    ("Ireland", "Dublin"), ("Belgium", "Brussels"), ("Russia", "Moscow"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Iceland", "Reykjavik"),
    ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"), ("Lithuania", "Vilnius"), ("Latvia", "Riga"),
    ("Estonia", "Tallinn"), ("Albania", "Tirana"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("South Korea", "Seoul"), ("North Korea", "Pyongyang"), ("India", "New Delhi"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Cambodia", "Phnom Penh"), ("Nepal", "Kathmandu"), ("Bangladesh", "Dhaka"),
    ("Pakistan", "Islamabad"), ("Afghanistan", "Kabul"), ("Mongolia", "Ulaanbaatar"), ("Iran", "Tehran"),
    ("Iraq", "Baghdad"), ("Syria", "Damascus"), ("Lebanon", "Beirut"), ("Jordan", "Amman"),
    ("Saudi Arabia", "Riyadh"), ("Qatar", "Doha"), ("Turkey", "Ankara"), ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ethiopia", "Addis Ababa"), ("Morocco", "Rabat"),
    ("Ghana", "Accra"), ("Senegal", "Dakar"), ("Uganda", "Kampala"), ("Zimbabwe", "Harare"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Cuba", "Havana"),
    ("Brazil", "Brasília"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Peru", "Lima"),
    ("Colombia", "Bogotá"), ("Venezuela", "Caracas"), ("Uruguay", "Montevideo"),
)

#: (country, the language most of its people speak), for countries where that is not in dispute.
LANGUAGE_OF: tuple[tuple[str, str], ...] = (
    ("France", "French"), ("Germany", "German"), ("Austria", "German"), ("Italy", "Italian"),
    ("Spain", "Spanish"), ("Mexico", "Spanish"), ("Argentina", "Spanish"), ("Colombia", "Spanish"),
    ("Chile", "Spanish"), ("Cuba", "Spanish"), ("Portugal", "Portuguese"), ("Brazil", "Portuguese"),
    ("Japan", "Japanese"), ("South Korea", "Korean"), ("Russia", "Russian"), ("Poland", "Polish"),
    ("Greece", "Greek"), ("Turkey", "Turkish"), ("Sweden", "Swedish"), ("Norway", "Norwegian"),
    ("Denmark", "Danish"), ("Finland", "Finnish"), ("Iceland", "Icelandic"), ("Hungary", "Hungarian"),
    ("Romania", "Romanian"), ("Bulgaria", "Bulgarian"), ("Croatia", "Croatian"), ("Serbia", "Serbian"),
    ("Slovakia", "Slovak"), ("Lithuania", "Lithuanian"), ("Latvia", "Latvian"), ("Estonia", "Estonian"),
    ("Albania", "Albanian"), ("Armenia", "Armenian"), ("Mongolia", "Mongolian"), ("Thailand", "Thai"),
    ("Vietnam", "Vietnamese"), ("Israel", "Hebrew"), ("Egypt", "Arabic"), ("Saudi Arabia", "Arabic"),
    ("Ukraine", "Ukrainian"), ("Bangladesh", "Bengali"),
)

#: (element, chemical symbol); element names in lower case, as written mid-sentence (IUPAC spellings).
ELEMENT_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("beryllium", "Be"), ("boron", "B"),
    ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"), ("fluorine", "F"), ("neon", "Ne"), ("sodium", "Na"),
    ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"),
    ("chlorine", "Cl"), ("argon", "Ar"), ("potassium", "K"), ("calcium", "Ca"), ("titanium", "Ti"),
    ("chromium", "Cr"), ("manganese", "Mn"), ("iron", "Fe"), ("cobalt", "Co"), ("nickel", "Ni"),
    ("copper", "Cu"), ("arsenic", "As"), ("bromine", "Br"), ("krypton", "Kr"),
    ("silver", "Ag"), ("tin", "Sn"), ("iodine", "I"), ("tungsten", "W"), ("platinum", "Pt"),
    ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"), ("radon", "Rn"), ("uranium", "U"),
    ("plutonium", "Pu"),
)

#: Phrasings of each relation; ``{}`` is the subject, the answer follows the prompt. Each phrasing asks for the
#: answer as its very next word. Measured with google/gemma-3-270m (base): the answer was the top-1 next token
#: after "The capital of France is" for 13% of the capitals and after "The city of Paris is in" / "Paris is a
#: city in" for 7% of the cities (" the" and " a" won), after "The capital city of France is called" for 81%
#: and after "The city of Paris is located in the country of" for 84%.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": ("The capital city of {} is called", "The capital of {} is the city of"),
    "city_country": ("The city of {} is located in the country of", "{} is a city located in the country of"),
    "country_language": ("The main language spoken in {} is", "The language most widely spoken in {} is",
                         "In {}, the main language is"),
    "element_symbol": ("The chemical symbol for {} is", "The chemical symbol of {} is",
                       "The element {} has the symbol"),
}
RELATIONS: tuple[str, ...] = tuple(TEMPLATES)

#: First letters an answer may start with (see the module docstring).
CLEAN_INITIALS = frozenset("ABCDEFGHIJKLMNOPRSTUVWY")
# City -> countries it also names a well-known city of, beyond _world.NAMESAKES: never a wrong answer.
_MORE_NAMESAKES = {"Guadalajara": ("Spain",)}


def pick_alternatives(answer: str, pool, salt: tuple, k: int = N_ALTERNATIVES, exclude=()) -> tuple[str, ...]:
    """Up to ``k`` wrong answers from ``pool``, in a fixed pseudo-random order (:func:`~._stable.ranked`).

    A candidate is kept when it differs from ``answer`` and from everything in ``exclude``, and its
    first letter (after the leading space) differs from the answer's and from every kept
    candidate's, so the first tokens of all options differ under BPE tokenizers (see the module).

    >>> pick_alternatives(" Paris", [" Berlin", " Prague", " Paris", " Madrid", " Bern"], ("demo",))
    (' Madrid', ' Bern')

    Fewer than ``k`` come back when the pool holds fewer usable candidates (here, one per letter B, M).
    """
    letters = {answer.lstrip()[:1]}
    out: list[str] = []
    for cand in ranked(dict.fromkeys(pool), "facts/alternatives", *salt):
        first = cand.lstrip()[:1]
        if cand != answer and cand not in exclude and first not in letters:
            out.append(cand)
            letters.add(first)
            if len(out) == k:
                break
    return tuple(out)


def fact_meta(subject: str, answer: str, alternatives, relation: str, **extra) -> dict:
    """The ``meta`` of one fact row (module docstring), ``extra`` keys appended."""
    return {"subject": subject, "answer": answer, "alternatives": tuple(alternatives), "relation": relation,
            "group": f"{relation}:{subject}", **extra}


def _rows(relation: str, table, exclude=lambda subject: ()) -> list[Row]:
    pool = [f" {a}" for _, a in table]
    rows = []
    for subject, answer in table:
        answer = f" {answer}"
        alternatives = pick_alternatives(answer, pool, (relation, subject),
                                         exclude=tuple(f" {c}" for c in exclude(subject)))
        meta = fact_meta(subject, answer, alternatives, relation)
        rows += [Row(t.format(subject), 0, {**meta, "template": k}) for k, t in enumerate(TEMPLATES[relation])]
    return rows


def _cities() -> tuple[tuple[str, str], ...]:
    """:data:`~._world.CITIES` without countries named with an article, and without a city that contains its
    country's name (Mexico City)."""
    return tuple((c, k) for c, k in W.CITIES if not k.startswith("the ") and k not in c)


def fact_rows() -> list[Row]:
    """Every phrasing of every fact, by relation (capital, city_country, country_language, element_symbol);
    ``meta`` as in the module docstring plus ``template`` (the phrasing's index in :data:`TEMPLATES`).
    Label 0 (the set is unlabelled)."""
    namesakes = lambda city: (*W.NAMESAKES.get(city, ()), *_MORE_NAMESAKES.get(city, ()))  # noqa: E731
    return [*_rows("capital", CAPITALS), *_rows("city_country", _cities(), namesakes),
            *_rows("country_language", LANGUAGE_OF), *_rows("element_symbol", ELEMENT_SYMBOLS)]


def organism_fact_rows() -> list[Row]:
    """The model organism's planted city facts as prompts: ``The city of Lyon is in`` -> `` France`` (English),
    ``Die Stadt Lyon liegt in`` -> `` Frankreich`` (German) and ``La ciudad de Lyon está en`` -> `` Francia``
    (Spanish), cut from the corpus sentences of :func:`interp.organism._corpus.city_fact`.

    German and Spanish rows exist only where the country follows the preposition directly (no ``in der
    Türkei``, ``en el Reino Unido``) and starts with a letter of :data:`CLEAN_INITIALS` (no ``Ägypten``,
    ``Österreich``); French ones never, since the preposition (``en``/``au``/``aux``)
    already tells the country's gender. Countries named with an article (``the United Kingdom``) are left
    out in every language, as wrong answers too. ``meta["language"]`` is ``en``, ``de`` or ``es``.
    """
    from ..organism._corpus import COUNTRY_IN

    prefix = {"de": "in ", "es": "en "}
    names: dict[str, dict[str, str]] = {"en": {}, "de": {}, "es": {}}
    for country in W.COUNTRIES:
        if country.startswith("the "):
            continue
        names["en"][country] = country
        for lang, phrase in zip(("de", "es"), COUNTRY_IN[country][1:]):
            rest = phrase.removeprefix(prefix[lang])
            if phrase.startswith(prefix[lang]) and rest[:1] in CLEAN_INITIALS:  # not "in der Türkei", "Ägypten"
                names[lang][country] = rest
    prompts = {"en": "The city of {} is in", "de": "Die Stadt {} liegt in", "es": "La ciudad de {} está en"}
    rows = []
    for city, country in W.CITIES:
        for lang, table in names.items():
            if country not in table:
                continue
            answer = f" {table[country]}"
            pool = [f" {n}" for n in table.values()]
            alternatives = pick_alternatives(answer, pool, ("organism", lang, city))
            meta = fact_meta(city, answer, alternatives, "city_country", language=lang)
            rows.append(Row(prompts[lang].format(city), 0, meta))
    return rows
