"""Fact tables of a small world, written for this project.

Shared by the built-in prompt sets and by the model organism's training corpus,
so that held-out prompts and training text speak about the same world.
"""

from __future__ import annotations

__all__ = ["CITIES", "COUNTRIES", "SPANISH_WORDS", "SUBJECTS", "PREDICATES", "LANGUAGES", "number_words"]

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

#: (Spanish word, English meaning) pairs for translation statements.
SPANISH_WORDS: tuple[tuple[str, str], ...] = (
    ("perro", "dog"), ("gato", "cat"), ("casa", "house"), ("libro", "book"), ("agua", "water"),
    ("sol", "sun"), ("luna", "moon"), ("mesa", "table"), ("silla", "chair"), ("pan", "bread"),
    ("leche", "milk"), ("manzana", "apple"), ("caballo", "horse"), ("pájaro", "bird"), ("árbol", "tree"),
    ("flor", "flower"), ("coche", "car"), ("ciudad", "city"), ("puerta", "door"), ("ventana", "window"),
    ("cielo", "sky"), ("mar", "sea"), ("montaña", "mountain"), ("río", "river"), ("noche", "night"),
    ("día", "day"), ("hermano", "brother"), ("hermana", "sister"), ("madre", "mother"), ("padre", "father"),
    ("rojo", "red"), ("verde", "green"), ("grande", "big"), ("pequeño", "small"), ("hablar", "to speak"),
    ("comer", "to eat"), ("dormir", "to sleep"), ("escribir", "to write"), ("uno", "one"), ("dos", "two"),
    ("tres", "three"), ("queso", "cheese"), ("zapato", "shoe"), ("camisa", "shirt"), ("llave", "key"),
)

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
