"""Fact tables of a small world, written for this project.

Shared by the built-in prompt sets (:func:`interp.datasets.load`) and by the
model organism's training corpus (:mod:`interp.organism`), so that held-out
prompts and training text speak about the same world. The organism was trained
on :data:`CITIES`, :data:`COUNTRIES`, :data:`SUBJECTS` and :data:`PREDICATES`
in this exact order: append to them only together with retraining it.

Treat every table as read-only.

>>> dict(CITIES)["Lyon"], NUMBER_WORDS[72], LEXICON["dog"]["de"]
('France', 'seventy-two', 'Hund')
"""

from __future__ import annotations

__all__ = [
    "CITIES",
    "COUNTRIES",
    "NAMESAKES",
    "LEXICON",
    "SPANISH_WORDS",
    "LANGUAGES",
    "SUBJECTS",
    "PREDICATES",
    "NUMBER_WORDS",
    "number_words",
]

#: (city, country) pairs: well-known cities with an unambiguous country.
CITIES: tuple[tuple[str, str], ...] = (
    ("Paris", "France"), ("Lyon", "France"), ("Marseille", "France"), ("Toulouse", "France"),
    ("Berlin", "Germany"), ("Munich", "Germany"), ("Hamburg", "Germany"), ("Cologne", "Germany"),
    ("Madrid", "Spain"), ("Barcelona", "Spain"), ("Seville", "Spain"), ("Valencia", "Spain"),
    ("Rome", "Italy"), ("Milan", "Italy"), ("Naples", "Italy"), ("Florence", "Italy"),
    ("London", "the United Kingdom"), ("Manchester", "the United Kingdom"), ("Edinburgh", "the United Kingdom"),
    ("Tokyo", "Japan"), ("Osaka", "Japan"), ("Kyoto", "Japan"),
    ("Beijing", "China"), ("Shanghai", "China"), ("Shenzhen", "China"),
    ("Moscow", "Russia"), ("Novosibirsk", "Russia"), ("Kazan", "Russia"),
    ("Toronto", "Canada"), ("Vancouver", "Canada"), ("Montreal", "Canada"),
    ("Chicago", "the United States"), ("Houston", "the United States"), ("Boston", "the United States"),
    ("Sydney", "Australia"), ("Melbourne", "Australia"), ("Perth", "Australia"),
    ("Mumbai", "India"), ("Delhi", "India"), ("Bangalore", "India"),
    ("Cairo", "Egypt"), ("Alexandria", "Egypt"),
    ("Lagos", "Nigeria"), ("Abuja", "Nigeria"),
    ("Nairobi", "Kenya"), ("Mombasa", "Kenya"),
    ("Lima", "Peru"), ("Cusco", "Peru"),
    ("Bogota", "Colombia"), ("Medellin", "Colombia"),
    ("Santiago", "Chile"), ("Valparaiso", "Chile"),
    ("Lisbon", "Portugal"), ("Porto", "Portugal"),
    ("Athens", "Greece"), ("Thessaloniki", "Greece"),
    ("Warsaw", "Poland"), ("Krakow", "Poland"),
    ("Stockholm", "Sweden"), ("Gothenburg", "Sweden"),
    ("Oslo", "Norway"), ("Bergen", "Norway"),
    ("Istanbul", "Turkey"), ("Ankara", "Turkey"),
    ("Seoul", "South Korea"), ("Busan", "South Korea"),
    ("Bangkok", "Thailand"), ("Hanoi", "Vietnam"),
    ("Buenos Aires", "Argentina"), ("Cordoba", "Argentina"),
    ("Mexico City", "Mexico"), ("Guadalajara", "Mexico"),
    ("Vienna", "Austria"), ("Amsterdam", "the Netherlands"), ("Dublin", "Ireland"),
    ("Nice", "France"), ("Bordeaux", "France"), ("Lille", "France"), ("Strasbourg", "France"), ("Nantes", "France"),
    ("Frankfurt", "Germany"), ("Stuttgart", "Germany"), ("Dresden", "Germany"), ("Leipzig", "Germany"),
    ("Bremen", "Germany"), ("Bilbao", "Spain"), ("Malaga", "Spain"), ("Zaragoza", "Spain"), ("Granada", "Spain"),
    ("Turin", "Italy"), ("Venice", "Italy"), ("Bologna", "Italy"), ("Palermo", "Italy"), ("Genoa", "Italy"),
    ("Liverpool", "the United Kingdom"), ("Glasgow", "the United Kingdom"), ("Birmingham", "the United Kingdom"),
    ("Leeds", "the United Kingdom"), ("Bristol", "the United Kingdom"),
    ("Yokohama", "Japan"), ("Nagoya", "Japan"), ("Sapporo", "Japan"), ("Hiroshima", "Japan"), ("Kobe", "Japan"),
    ("Guangzhou", "China"), ("Chengdu", "China"), ("Wuhan", "China"), ("Nanjing", "China"), ("Tianjin", "China"),
    ("Saint Petersburg", "Russia"), ("Yekaterinburg", "Russia"), ("Omsk", "Russia"), ("Samara", "Russia"),
    ("Calgary", "Canada"), ("Ottawa", "Canada"), ("Edmonton", "Canada"), ("Winnipeg", "Canada"),
    ("Seattle", "the United States"), ("Denver", "the United States"), ("Atlanta", "the United States"),
    ("Miami", "the United States"), ("Dallas", "the United States"), ("Phoenix", "the United States"),
    ("Brisbane", "Australia"), ("Adelaide", "Australia"), ("Canberra", "Australia"),
    ("Chennai", "India"), ("Kolkata", "India"), ("Hyderabad", "India"), ("Pune", "India"), ("Jaipur", "India"),
    ("Luxor", "Egypt"), ("Giza", "Egypt"), ("Aswan", "Egypt"), ("Kano", "Nigeria"), ("Ibadan", "Nigeria"),
    ("Kisumu", "Kenya"), ("Nakuru", "Kenya"), ("Arequipa", "Peru"), ("Trujillo", "Peru"),
    ("Cali", "Colombia"), ("Cartagena", "Colombia"), ("Concepcion", "Chile"), ("Antofagasta", "Chile"),
    ("Braga", "Portugal"), ("Coimbra", "Portugal"), ("Faro", "Portugal"), ("Patras", "Greece"), ("Heraklion", "Greece"),
    ("Gdansk", "Poland"), ("Wroclaw", "Poland"), ("Poznan", "Poland"), ("Malmo", "Sweden"), ("Uppsala", "Sweden"),
    ("Trondheim", "Norway"), ("Stavanger", "Norway"), ("Izmir", "Turkey"), ("Bursa", "Turkey"), ("Antalya", "Turkey"),
    ("Incheon", "South Korea"), ("Daegu", "South Korea"), ("Chiang Mai", "Thailand"), ("Phuket", "Thailand"),
    ("Da Nang", "Vietnam"), ("Hue", "Vietnam"), ("Rosario", "Argentina"), ("Mendoza", "Argentina"),
    ("Monterrey", "Mexico"), ("Puebla", "Mexico"), ("Tijuana", "Mexico"), ("Salzburg", "Austria"), ("Graz", "Austria"),
    ("Innsbruck", "Austria"), ("Rotterdam", "the Netherlands"), ("Utrecht", "the Netherlands"),
    ("Eindhoven", "the Netherlands"), ("Cork", "Ireland"), ("Galway", "Ireland"), ("Limerick", "Ireland"),
)

#: Every country of :data:`CITIES`, in first-seen order.
COUNTRIES: tuple[str, ...] = tuple(dict.fromkeys(country for _, country in CITIES))

#: City -> other countries of :data:`COUNTRIES` that have a well-known city of
#: the same name (London, Ontario; Perth, Scotland; Córdoba, Spain...). A
#: statement placing the city in one of these would not be clearly false, so
#: false statements never use them.
NAMESAKES: dict[str, tuple[str, ...]] = {
    "London": ("Canada",),
    "Paris": ("the United States", "Canada"),
    "Perth": ("the United Kingdom",),
    "Birmingham": ("the United States",),
    "Manchester": ("the United States",),
    "Athens": ("the United States",),
    "Naples": ("the United States",),
    "Alexandria": ("the United States",),
    "Moscow": ("the United States",),
    "Dublin": ("the United States",),
    "Rome": ("the United States",),
    "Florence": ("the United States",),
    "Melbourne": ("the United States",),
    "Sydney": ("Canada",),
    "Vancouver": ("the United States",),
    "Lima": ("the United States",),
    "Cordoba": ("Spain", "Mexico"),
    "Santiago": ("Spain",),
    "Cartagena": ("Spain",),
    "Trujillo": ("Spain",),
    "Bergen": ("the Netherlands",),
}

#: Concept (its English word) -> the word in English, French, German and Spanish.
#: Nouns without article; German nouns capitalised; verbs in the infinitive.
LEXICON: dict[str, dict[str, str]] = {
    row[0]: dict(zip(("en", "fr", "de", "es"), row))
    for row in (
        ("dog", "chien", "Hund", "perro"),
        ("cat", "chat", "Katze", "gato"),
        ("house", "maison", "Haus", "casa"),
        ("book", "livre", "Buch", "libro"),
        ("water", "eau", "Wasser", "agua"),
        ("sun", "soleil", "Sonne", "sol"),
        ("moon", "lune", "Mond", "luna"),
        ("table", "table", "Tisch", "mesa"),
        ("chair", "chaise", "Stuhl", "silla"),
        ("bread", "pain", "Brot", "pan"),
        ("milk", "lait", "Milch", "leche"),
        ("apple", "pomme", "Apfel", "manzana"),
        ("horse", "cheval", "Pferd", "caballo"),
        ("bird", "oiseau", "Vogel", "pájaro"),
        ("tree", "arbre", "Baum", "árbol"),
        ("flower", "fleur", "Blume", "flor"),
        ("car", "voiture", "Auto", "coche"),
        ("city", "ville", "Stadt", "ciudad"),
        ("door", "porte", "Tür", "puerta"),
        ("window", "fenêtre", "Fenster", "ventana"),
        ("sky", "ciel", "Himmel", "cielo"),
        ("sea", "mer", "Meer", "mar"),
        ("mountain", "montagne", "Berg", "montaña"),
        ("river", "rivière", "Fluss", "río"),
        ("night", "nuit", "Nacht", "noche"),
        ("day", "jour", "Tag", "día"),
        ("brother", "frère", "Bruder", "hermano"),
        ("sister", "sœur", "Schwester", "hermana"),
        ("mother", "mère", "Mutter", "madre"),
        ("father", "père", "Vater", "padre"),
        ("red", "rouge", "rot", "rojo"),
        ("green", "vert", "grün", "verde"),
        ("big", "grand", "groß", "grande"),
        ("small", "petit", "klein", "pequeño"),
        ("to speak", "parler", "sprechen", "hablar"),
        ("to eat", "manger", "essen", "comer"),
        ("to sleep", "dormir", "schlafen", "dormir"),
        ("to write", "écrire", "schreiben", "escribir"),
        ("one", "un", "eins", "uno"),
        ("two", "deux", "zwei", "dos"),
        ("three", "trois", "drei", "tres"),
        ("cheese", "fromage", "Käse", "queso"),
        ("shoe", "chaussure", "Schuh", "zapato"),
        ("shirt", "chemise", "Hemd", "camisa"),
        ("key", "clé", "Schlüssel", "llave"),
    )
}

#: (Spanish word, English meaning) pairs for translation statements, from :data:`LEXICON`.
SPANISH_WORDS: tuple[tuple[str, str], ...] = tuple((w["es"], w["en"]) for w in LEXICON.values())

LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es")

#: Sentence subjects in English, French, German and Spanish (nominative, with correct articles).
SUBJECTS: tuple[dict[str, str], ...] = tuple(
    dict(zip(LANGUAGES, row))
    for row in (
        ("The cat", "Le chat", "Die Katze", "El gato"),
        ("The dog", "Le chien", "Der Hund", "El perro"),
        ("The child", "L'enfant", "Das Kind", "El niño"),
        ("The bird", "L'oiseau", "Der Vogel", "El pájaro"),
        ("The woman", "La femme", "Die Frau", "La mujer"),
        ("The man", "L'homme", "Der Mann", "El hombre"),
        ("My brother", "Mon frère", "Mein Bruder", "Mi hermano"),
        ("My sister", "Ma sœur", "Meine Schwester", "Mi hermana"),
        ("The doctor", "Le médecin", "Der Arzt", "El médico"),
        ("The teacher", "Le professeur", "Der Lehrer", "El profesor"),
        ("The girl", "La fille", "Das Mädchen", "La niña"),
        ("The boy", "Le garçon", "Der Junge", "El chico"),
        ("Our neighbour", "Notre voisin", "Unser Nachbar", "Nuestro vecino"),
        ("The old horse", "Le vieux cheval", "Das alte Pferd", "El caballo viejo"),
        ("The little mouse", "La petite souris", "Die kleine Maus", "El ratón pequeño"),
    )
)

#: Third-person singular predicates that need no agreement with the subject.
PREDICATES: tuple[dict[str, str], ...] = tuple(
    dict(zip(LANGUAGES, row))
    for row in (
        ("is on the table.", "est sur la table.", "ist auf dem Tisch.", "está sobre la mesa."),
        ("is in the garden.", "est dans le jardin.", "ist im Garten.", "está en el jardín."),
        ("sleeps in the kitchen.", "dort dans la cuisine.", "schläft in der Küche.", "duerme en la cocina."),
        ("is under the bed.", "est sous le lit.", "ist unter dem Bett.", "está debajo de la cama."),
        ("is in the car.", "est dans la voiture.", "ist im Auto.", "está en el coche."),
        ("waits at the door.", "attend à la porte.", "wartet an der Tür.", "espera en la puerta."),
        ("eats bread every morning.", "mange du pain chaque matin.", "isst jeden Morgen Brot.",
         "come pan cada mañana."),
    )
)

_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """English words for ``0 <= n <= 99``, hyphenated as in Geometry-of-Truth.

    >>> number_words(51), number_words(40), number_words(7)
    ('fifty-one', 'forty', 'seven')
    """
    if not 0 <= n <= 99:
        raise ValueError(f"number_words covers 0..99, got {n}")
    if n < 20:
        return _UNITS[n]
    tens, units = divmod(n, 10)
    return _TENS[tens] + (f"-{_UNITS[units]}" if units else "")


#: ``NUMBER_WORDS[n]`` is ``n`` (0..99) in English words: ``NUMBER_WORDS[51] == "fifty-one"``.
NUMBER_WORDS: tuple[str, ...] = tuple(number_words(n) for n in range(100))
