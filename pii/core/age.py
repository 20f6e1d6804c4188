"""Child-data clues in free text: was this written by, or about, a child - and how old?

For the child-data purge ("if we discover a child under 13 has provided personal information, we
delete it"; the threshold - 13, 16 or 18 - is the caller's). Pattern-based and offline: no spaCy model,
no download. Every clue carries the age it states (or the lower end of the age it implies), a score and
a kind:

    kind           example                                   score   age reported
    first_person   "I am 12", "I'm twelve", "im 12 yo",       0.65-   the number; "I'm turning/almost/
                   "my age is 12", "I just turned 12",        0.95    nearly/under 13" -> 12; "my 13th
                   "I'm a 12 year old", "my 13th birthday"            birthday" -> 12 (it may be next week)
    about_child    "my son (9)", "my daughter, 7,", "our      0.7-    the number (lowest of a list:
                   kid is 8", "my 10 year old", "my kids      0.85    "my kids are 5 and 7" -> 5); any
                   are 5 and 7", "my nephew is 8"                     relative: "my sister, 34" -> 34
    third_person   "she is 12", "he's 9 years old"            0.5-0.65
    stated_age     "11 years old", "11-year-old", "aged 11",  0.55-0.6
                   "age: 9", "6 month old" (months/weeks/days
                   -> whole years: 6 months -> 0, 12 months -> 1)
    birth_date     "born 12/03/2014", "DOB: 2014-03-12",      0.8     completed years on `today`
                   "born in 2014"                             0.6     (year only: the lower of the two)
    school_year    UK "Year 6 pupil", "in year 7" (age year+4..year+5: Year 6 -> 10);  0.3-0.55
                   US "5th grade", "in grade 5", "5th grader" (age grade+5..grade+6: 5th -> 10);
                   Scotland "in P5" (age P+3..P+5: P5 -> 8)
    school_stage   "primary school", "kindergarten", "nursery school", "toddler" ...  0.2-0.35, age None
                   (the stage's age range is in `age_range`; e.g. primary school 4-11)

School years report the *lower* age of the year group (a Year 6 class is 10 turning 11): the purge errs
towards the child. Indirect clues (school year/stage, stated ages with no person) get +0.1 when a child
word (school, mum, homework, birthday ...) is within 60 characters. Scores keep first-person statements
above every school clue.

Not clues (tested): units and quantities ("I am 12 minutes late", "I'm 12 weeks pregnant", "I'm 12.50
short"), audiences and limits ("over 18", "aged 18+", "under 13s", "ages 5-11", "for a 5 year old",
"5 year olds"), things ("12 years old company", "my car is 12 years old", "whisky aged 12 years", "my 10
year old dog"), past ("when I was 12 years old", "I went to primary school with him"), "Year 2024", "in
year 2 of the contract", "grade 5 steel", "a grade 5 in maths", "grade 5 piano", "room 12", dates, prices.
Ages of 18 and over are still reported by the recognizer (the caller applies the threshold), but not by
`find_child_clues` unless below its threshold.

API: `ChildAgeRecognizer` (Presidio PatternRecognizer, entity "CHILD_AGE"; each result's
`recognition_metadata` holds "age", "age_range", "kind"), `find_child_clues(text, threshold)`,
`might_mention_age(text)` and `PREFILTER_TERMS` (a text with none of these lower-case substrings never
yields a clue: push down as SQL LIKE), `text_test(threshold)` for `RecordFilter(text_test=...,
text_terms=PREFILTER_TERMS)`, `register(analyzer)` to add the recognizer to an AnalyzerEngine.

Throughput (measured 2026-11, 2-core VM, one thread; 10,000 short texts, 29 characters on average: 10%
stating an age, 20% tricky non-ages like "I am 12 minutes late", 70% ordinary customer messages):
find_child_clues ~ 125,000 texts/s (the prefilter passes 28% of them); the recognizer on every text
~ 70,000 texts/s; find_child_clues through an AnalyzerEngine with a blank spaCy pipeline ~ 37,000 texts/s.

Known misses: "my 10yo" (a bare "yo" without "I'm"/"my son": "yo" is in every "you", so it cannot be a
prefilter term), "the kids are 5 and 7" (no "my"/"our"), ages in words above nineteen, "he turned 9",
"I'll be 13", "at the age of 9", "Y6", bare "grade 5" with no school word, non-English text. Known false
positives: things missing from THINGS ("my 12 year old MacBook"), "I am 12 again at heart", a pet
called "he" ("my dog? he is 9"), adults reminiscing without a past-tense marker ("my 5th grade teacher").
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # as pii.core.detection: Presidio stays offline

from presidio_analyzer import Pattern as _Pattern  # noqa: E402
from presidio_analyzer import PatternRecognizer as _PatternRecognizer  # noqa: E402
from presidio_analyzer import RecognizerResult as _RecognizerResult  # noqa: E402

from pii.core.dates import age_on, parse_date  # noqa: E402

ENTITY = "CHILD_AGE"

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
}
MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

# School stages with no number: (lowest, highest) age of their pupils.
STAGES = {
    "primary school": (4, 11), "elementary school": (5, 11), "grade school": (5, 11),
    "junior school": (7, 11), "infant school": (4, 7), "nursery school": (2, 4), "at nursery": (2, 4),
    "to nursery": (2, 4), "preschool": (3, 5), "pre-school": (3, 5), "preschooler": (3, 5),
    "kindergarten": (4, 6), "toddler": (1, 3), "newborn": (0, 0), "middle school": (11, 14),
    "junior high": (12, 15), "secondary school": (11, 18), "high school": (14, 18), "sixth form": (16, 18),
}
_STAGE_SCORE = {"middle school": 0.2, "junior high": 0.2, "secondary school": 0.2, "high school": 0.2,
                "sixth form": 0.2}

# A text holding none of these (lower-cased) can never produce a clue: every rule's regex needs one of
# them literally. tests/core/test_age.py checks this over every positive example.
PREFILTER_TERMS: tuple[str, ...] = (
    "i am", "i'm", "i’m", "im ", "he is", "he's", "he’s", "i turn", "just turned", "age", "old", "y/o",
    "y.o", "year", "yr", "grade", "in p", "school", "kindergarten", "nursery", "toddler", "newborn",
    "sixth form", "junior high", "son", "daughter", "kid", "child", "boy", "girl", "twin", "brother",
    "sister", "nephew", "niece", "birth", "born", "dob", "d.o.b",
)

# Words near an indirect clue that make a child more likely.
CONTEXT_WORDS: tuple[str, ...] = (
    "child", "children", "kid", "kids", "son", "daughter", "school", "pupil", "pupils", "student",
    "parent", "parents", "mum", "mom", "mummy", "mommy", "dad", "daddy", "birthday", "teacher", "class",
    "homework", "toy", "toys", "playground", "nursery", "little", "boy", "girl",
)

# Nouns whose age is not a person's.
THINGS = (
    "company", "companies", "business", "firm", "brand", "shop", "store", "restaurant", "car", "cars",
    "vehicle", "van", "truck", "bike", "house", "home", "building", "property", "flat", "apartment",
    "roof", "boiler", "laptop", "computer", "pc", "phone", "iphone", "tablet", "device", "machine",
    "printer", "tv", "camera", "battery", "account", "software", "system", "website", "site", "app",
    "product", "model", "tree", "trees", "wine", "whisky", "whiskey", "scotch", "bourbon", "rum",
    "cognac", "cheese", "beef", "steak", "ham", "bottle", "cask", "casks", "barrel", "barrels", "oak",
    "dog", "dogs", "cat", "cats", "puppy", "kitten", "horse", "pony", "pet", "rabbit", "hamster",
    "parrot", "fish", "labrador", "tortoise", "mattress", "sofa", "bed", "furniture", "tyre", "tyres",
    "tire", "tires", "engine", "bridge", "church", "policy", "contract", "loan", "mortgage", "debt",
    "invoice", "bill", "data", "record", "file", "photo", "picture", "post", "thread", "email",
    "message", "video", "song", "game", "movie", "film", "book", "article", "blog", "card", "ticket",
    "order", "package", "parcel", "item", "shoes", "boots", "coat", "jacket", "bag", "watch", "ring",
    "plant", "fence", "kitchen", "bathroom", "window", "windows", "door", "carpet", "sign", "version",
    "server", "warranty", "subscription", "membership", "listing", "steel", "bolt", "bolts",
)
# After "grade N"/"Nth grade": grades of materials, music, medicine, pay.
GRADE_THINGS = THINGS + (
    "aluminium", "aluminum", "titanium", "alloy", "concrete", "wood", "leather", "cotton", "paper", "oil",
    "quality", "material", "materials", "meat", "tea", "coffee", "rice", "diamond", "piano", "violin",
    "viola", "cello", "guitar", "theory", "music", "ballet", "dance", "singing", "flute", "clarinet",
    "trumpet", "saxophone", "drums", "abrsm", "trinity", "tumour", "tumor", "cancer", "injury", "strain",
    "sprain", "ligament", "tear", "listed", "exam", "exams", "pass", "level", "reading level",
    "math level", "maths level", "writing level", "vocabulary", "equivalent", "standard",
)
SCHOOL_NOUNS = (
    "pupil", "pupils", "student", "students", "child", "children", "kid", "kids", "boy", "boys", "girl",
    "girls", "class", "classes", "classroom", "form", "group", "sats", "son", "daughter", "homework",
    "trip", "teacher", "teachers", "parents", "mocks", "options", "at", "in primary", "in junior",
    "in middle", "in elementary", "in secondary", "in high", "student's", "pupil's", "grader", "graders",
)
ADULT_AFTER = ("teacher", "teachers", "teaching", "headteacher", "head", "staff", "principal",
               "friend", "friends", "supplies", "supplier", "suppliers", "contract", "contracts", "run")

# ---- regex building blocks (the same syntax for `re` and for Presidio's `regex`)
_NUMW = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_ORDW = "|".join(sorted(ORDINAL_WORDS, key=len, reverse=True))


def _num(group: str) -> str:
    return rf"(?P<{group}>\d{{1,2}}(?!\d)|(?:{_NUMW})\b)"


_NUMTOK = rf"(?:\d{{1,2}}(?!\d)|(?:{_NUMW})\b)"
_UNIT = r"(?:years?|yrs?\.?|months?|mos?|weeks?|wks?|days?)"
# "years old" / "-year-old" / "years of age" / "y/o" (and, where allowed, "yo")
_SUFFIX_OLD = rf"(?P<unit> *-? *{_UNIT} *-? *(?:old\b|of +age\b)| *(?:y/o|y\.o\.?))"
_SUFFIX_ANY = rf"(?P<unit> *-? *{_UNIT} *-? *(?:old\b|of +age\b)| *(?:y/o|y\.o\.?|yo\b))"
# in "my son (12 months)" / "my son, 12 months," the unit alone says it is an age
_SUFFIX_LOOSE = rf"(?P<unit> *-? *{_UNIT}(?: *-? *(?:old\b|of +age\b))?| *(?:y/o|y\.o\.?|yo\b))"
_END = r"(?![\w'’\"%$£€°+])(?![.,:/\-–]\d)"
_I = r"\b(?:i am|i['’]m|im) +"
_POSS = (r"\b(?:my|our|his|her|their) +(?:(?:little|youngest|eldest|oldest|younger|older|middle|baby|"
         r"only|first|second|third|big|beautiful|lovely|step)[ -]+)*")
_REL = (r"(?:(?:grand|step)?son|(?:grand|step)?daughter|kid(?:do)?|(?:grand)?child|boy|girl|twin|"
        r"(?:(?:little|big|baby|younger|older|half|step)[ -]?)?(?:brother|sister)|nephew|niece)")
_RELS = (r"(?:(?:grand|step)?sons|(?:grand|step)?daughters|kids|(?:grand)?children|boys|girls|twins|"
         r"brothers|sisters|nephews|nieces)")
_ORD = rf"(?P<ord>\d{{1,2}}(?:st|nd|rd|th)|{_ORDW})"
_MONTHNAME = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (r"(?P<date>\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)? +(?:of +)?{_MONTHNAME},? +\d{{4}}"
         rf"|{_MONTHNAME} +\d{{1,2}}(?:st|nd|rd|th)?,? +\d{{4}}"
         r"|(?P<year>(?:19|20)\d{2}))(?![\d/.\-]\d)")
_STAGE_RX = "|".join(re.escape(s).replace(r"\ ", " ") for s in sorted(STAGES, key=len, reverse=True))


@dataclass(frozen=True)
class AgeRule:
    """One pattern: Presidio's (name, regex, score) plus what kind of clue it is and how to read the
    age from the match (`read`: "num", "num-1" (turning/almost/under N -> N-1), "nums" (lowest of a
    list), "uk_year", "us_grade", "scot_p", "birth", "birthday", "stage")."""
    name: str
    kind: str
    score: float
    regex: str
    read: str = "num"
    unit_score: float | None = None  # score when the age carries "years old"/"yo"


RULES: tuple[AgeRule, ...] = (
    # -- first person
    AgeRule("i_am_n", "first_person", 0.75,
            _I + r"(?:(?:only|just|now|actually|currently|really|like|literally) +)?" + _num("num")
            + _SUFFIX_ANY + "?" + _END, unit_score=0.95),
    AgeRule("i_am_turning_n", "first_person", 0.75,
            _I + r"(?:turning|going to be|gonna be|about to turn|almost|nearly|under|younger than|"
            r"not yet|not even) +" + _num("num") + _SUFFIX_ANY + "?" + _END, read="num-1"),
    AgeRule("i_turn_n", "first_person", 0.8,
            r"\bi(?: just|['’]ve just| have just)? turned +" + _num("num") + _SUFFIX_ANY + "?" + _END),
    AgeRule("i_turn_n_soon", "first_person", 0.75, r"\bi turn +" + _num("num") + _END, read="num-1"),
    AgeRule("my_age_is", "first_person", 0.9,
            r"\bmy age(?: is| *[:=\-]) *" + _num("num") + _SUFFIX_ANY + "?" + _END),
    AgeRule("my_nth_birthday", "first_person", 0.65, r"\bmy +" + _ORD + r" +birthday\b", read="birthday"),
    # -- someone the writer is responsible for
    AgeRule("rel_paren", "about_child", 0.85,
            _POSS + _REL + r" *\( *" + _num("num") + _SUFFIX_LOOSE + r"? *\)"),
    AgeRule("rel_comma", "about_child", 0.8,
            _POSS + _REL + r" *, *" + _num("num") + _SUFFIX_LOOSE
            + r"?(?= *(?:[,;.)!?]|$|and\b|&|who\b|is\b|has\b|was\b|loves\b|likes\b|goes\b))"),
    AgeRule("rel_is_n", "about_child", 0.8,
            _POSS + _REL + r"(?: +(?:is|just turned|has just turned|turned|aged?)|,? +who(?: is|['’]s)|['’]s) +"
            r"(?:(?:only|just|now|already) +)?" + _num("num") + _SUFFIX_ANY + "?" + _END, unit_score=0.85),
    AgeRule("rel_turning_n", "about_child", 0.8,
            _POSS + _REL + r"(?:(?: +is|['’]s) +(?:turning|almost|nearly|about to turn|going to be|under)"
            r"| +turns) +" + _num("num") + _SUFFIX_ANY + "?" + _END, read="num-1"),
    AgeRule("rels_are_n", "about_child", 0.8,
            _POSS + _RELS + r"(?: +are| +aged?| *,| *\() *(?P<nums>" + _NUMTOK + r"(?: *(?:,|and|&) *"
            + _NUMTOK + r")*)" + _SUFFIX_ANY + "?" + _END, read="nums"),
    AgeRule("rel_nth_birthday", "about_child", 0.7,
            r"\b(?:my|our|his|her|their) +" + _REL + r"['’]s +" + _ORD + r" +birthday\b", read="birthday"),
    # -- third person
    AgeRule("he_is_n", "third_person", 0.5,
            r"\bs?he(?: is|['’]s) +(?:(?:only|just|now) +)?" + _num("num") + _SUFFIX_ANY + "?" + _END,
            unit_score=0.65),
    AgeRule("his_nth_birthday", "third_person", 0.5, r"\b(?:his|her) +" + _ORD + r" +birthday\b",
            read="birthday"),
    # -- an age with no person named (kind may change with what precedes it, see _classify)
    AgeRule("n_years_old", "stated_age", 0.55,
            r"(?<![\w.,/:£$€\-–])" + _num("num") + _SUFFIX_OLD + _END),
    AgeRule("aged_n", "stated_age", 0.6,
            r"\baged? *(?:[:=] *|-+ *|is +)?" + _num("num")
            + rf"(?P<unit> *{_UNIT}(?: +old\b| +of +age\b)?)?" + _END),
    # -- birth dates
    AgeRule("born_on", "birth_date", 0.8,
            r"\b(?:born|d\.?o\.?b\.?|date of birth|birth ?date|birthday)(?: *[:=\-]| +on| +in| +is| +was)*"
            r" *" + _DATE, read="birth"),
    # -- school years
    AgeRule("uk_year", "school_year", 0.4, r"\b(?:year|yr) *(?P<num>1[0-3]|[1-9])(?!\d)" + _END,
            read="uk_year"),
    AgeRule("us_nth_grade", "school_year", 0.4,
            r"\b(?P<ord>1st|2nd|3rd|[4-9]th|1[0-2]th|" + "|".join(list(ORDINAL_WORDS)[:12])
            + r")[ -]+grade(?P<grader>rs?)?\b", read="us_grade"),
    AgeRule("us_grade_n", "school_year", 0.4, r"\bgrade *(?P<num>1[0-2]|[1-9])(?!\d)" + _END,
            read="us_grade"),
    AgeRule("scot_p", "school_year", 0.3, r"\bin p(?P<num>[1-7])(?![\w'’])", read="scot_p"),
    # -- school stages
    AgeRule("stage", "school_stage", 0.25, r"\b(?P<stage>" + _STAGE_RX + r")(?![\w\-])", read="stage"),
)

_I_TERMS = ("i am", "i'm", "i’m", "im ")
_REL_TERMS = ("son", "daughter", "kid", "child", "boy", "girl", "twin", "brother", "sister", "nephew", "niece")
# Lower-case strings one of which every match of a rule contains (so a rule whose anchors are all absent
# is not run, and a text with no PREFILTER_TERMS never yields a clue: each anchor holds one of them).
RULE_ANCHORS: dict[str, tuple[str, ...]] = {
    "i_am_n": _I_TERMS, "i_am_turning_n": _I_TERMS, "i_turn_n": ("i turned", "just turned"),
    "i_turn_n_soon": ("i turn",), "my_age_is": ("age",), "my_nth_birthday": ("birth",),
    "rel_paren": _REL_TERMS, "rel_comma": _REL_TERMS, "rel_is_n": _REL_TERMS, "rel_turning_n": _REL_TERMS,
    "rels_are_n": _REL_TERMS, "rel_nth_birthday": ("birth",), "he_is_n": ("he is", "he's", "he’s"),
    "his_nth_birthday": ("birth",), "n_years_old": ("old", "age", "y/o", "y.o"), "aged_n": ("age",),
    "born_on": ("born", "dob", "d.o.b", "birth"), "uk_year": ("year", "yr"), "us_nth_grade": ("grade",),
    "us_grade_n": ("grade",), "scot_p": ("in p",), "stage": tuple(STAGES),
}
_FLAGS = re.IGNORECASE | re.MULTILINE
_COMPILED = {r.name: re.compile(r.regex, _FLAGS) for r in RULES}
_RULE = {r.name: r for r in RULES}


def _words_rx(words) -> str:
    return r"(?:" + "|".join(re.escape(w).replace(r"\ ", " ") for w in sorted(set(words), key=len, reverse=True)) + r")"


_UNITS_AFTER = re.compile(
    r"\s*(?:per ?cent|percent|x\b|times|minutes?|mins?|hours?|hrs?|h\b|seconds?|secs?|days?|weeks?|wks?|"
    r"months?|mos?|years?|yrs?|decades?|[ap]\.?m\b|o['’]?clock|ft|feet|foot|inch(?:es)?|cm|mm|km|kms|"
    r"miles?|metres?|meters?|kg|kgs|kilos?|lbs?|pounds?|stone|st\b|quid|dollars?|bucks|euros?|cents?|"
    r"pence|points?|pts|items?|orders?|units?|boxes|packs?|pieces?|pcs|people|persons|customers|"
    r"tickets?|of\b|out of|or +\d|to +\d|for +\d|through +\d|and +(?:over|up|above|under|older|younger|below)\b|"
    r"or +(?:over|older|above|younger|under|more|less|below)\b|plus\b|in +(?:line|the queue|queue)|"
    r"percentile|pregnant|hour|times)", re.IGNORECASE)
_LIMIT_BEFORE = re.compile(
    r"\b(?:over|under|above|below|least|than|from|between|min|max|minimum|maximum|upto|up to|until|"
    r"till|til|by|legal|same|school|retirement|pension|voting|drinking|ice|stone|bronze|iron|new|golden|"
    r"dark|middle|space|digital|information|jazz|for a|for an|like a|like an|ages|kids|children|"
    r"of all|any)\s+(?:the\s+)?$", re.IGNORECASE)
_THING_BEFORE = re.compile(r"\b" + _words_rx(THINGS) + r"(?:['’]s)?\b[^.!?\n]{0,25}$", re.IGNORECASE)
_IT_BEFORE = re.compile(r"\b(?:it|this|that|which|its)(?: +is| +was|['’]s)? +(?:(?:now|only|just|almost|"
                        r"nearly|over|about|around|roughly|approx\.?) +)?$", re.IGNORECASE)
_THING_AFTER = re.compile(r"\s*(?:in +|of +)?" + _words_rx(THINGS) + r"\b", re.IGNORECASE)
_GRADE_THING_AFTER = re.compile(r"\s*" + _words_rx(GRADE_THINGS) + r"\b", re.IGNORECASE)
_GRADE_BEFORE_BAD = re.compile(r"\b(?:pay|salary|civil service|band|job|got|get|achieved|scored|"
                               r"predicted|minimum|at least|need|needs|needed)(?: +an?)?\s+$", re.IGNORECASE)
_PAST_BEFORE = re.compile(r"\b(?:i|we|he|she|they|you) +(?:was|were) +(?:(?:only|just|about|around|"
                          r"barely|a|an) +)*$", re.IGNORECASE)
_PAST_CLAUSE = re.compile(r"\b(?:was|were|used to|went to|back in|attended|years ago|as a|"
                          r"growing up|remember|memories)\b[^.!?\n]{0,40}$", re.IGNORECASE)
_I_A_BEFORE = re.compile(r"(?:\b(?:i am|i['’]m|im) +(?:(?:a|an|only|just|now|literally) +)*|\bas an? +)$",
                         re.IGNORECASE)
_MY_BEFORE = re.compile(r"\b(?:my|our) +(?:(?:little|youngest|eldest|oldest|younger|older|middle|"
                        r"only|beautiful|lovely|step)[ -]+)*$", re.IGNORECASE)
_PERSON_AFTER = re.compile(r"\s*" + _words_rx(("son", "daughter", "boy", "girl", "kid", "child", "twins",
                                               "grandson", "granddaughter", "pupil", "student",
                                               "brother", "sister", "niece", "nephew", "baby")) + r"\b",
                           re.IGNORECASE)
_SCHOOL_AFTER = re.compile(r"\s*" + _words_rx(SCHOOL_NOUNS) + r"\b", re.IGNORECASE)
_TEACHER_AFTER = re.compile(r"\s*(?:teacher|teachers|teaching|educator|tutor)\b", re.IGNORECASE)
_SCHOOL_BEFORE = re.compile(r"\b(?:in|into|entering|starting|started|finished|finishing|finishes|starts|"
                            r"moving up to|going into|my|our|his|her|their|is a|a)\s+$", re.IGNORECASE)
_WEAK_SCHOOL_BEFORE = re.compile(r"\b(?:in|a)\s+$", re.IGNORECASE)
_I_IN_BEFORE = re.compile(r"\b(?:i am|i['’]m|im) +(?:in|a)\s+$", re.IGNORECASE)
_LIMIT_AFTER = re.compile(r"\s*(?:\+|and +(?:over|up|upwards|above|under|older|younger|below)\b|"
                          r"or +(?:over|older|above|younger|under|more|less|below)\b|plus\b|"
                          r"(?:to|through|-|–) *\d)", re.IGNORECASE)
_TEACHES_BEFORE = re.compile(r"\b(?:teach|teaches|teaching|taught|tutor|tutors|tutoring|i am an?|i['’]m an?|"
                             r"im an?|as an?)\s+$", re.IGNORECASE)
_GRADE_N_AFTER_BAD = re.compile(r"\s*(?:or +(?:above|higher|better|more|below|lower)|and +(?:above|over|up)|"
                                r"in +(?:maths?|english|science|physics|chemistry|biology|history|geography|"
                                r"french|spanish|german|music|art|the exam|my|his|her|gcse))\b", re.IGNORECASE)
_YEAR_AFTER_BAD = re.compile(r"\s*(?:of\b|and +(?:year|yr)|[-–]|to\b|through\b|onwards?\b|plus\b|\+|"
                             r"results?\b|accounts?\b|revenue|profits?\b|budget|forecast|figures)",
                             re.IGNORECASE)
_ADULT_AFTER = re.compile(r"\s*" + _words_rx(ADULT_AFTER) + r"\b", re.IGNORECASE)
_CONTEXT = re.compile(r"\b" + _words_rx(CONTEXT_WORDS) + r"\b", re.IGNORECASE)

# matched against the lower-cased text (a case-insensitive alternation is ten times slower)
_ANCHORS = re.compile("|".join(re.escape(t) for t in PREFILTER_TERMS))
_SIGNAL = re.compile(r"\d|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twel|teen|first|second|"
                     r"third|fifth|ninth|school|kindergarten|nursery|toddler|newborn|junior high")


def might_mention_age(text: str) -> bool:
    """Cheap test: False means `find_child_clues` finds nothing in `text` for any threshold (it needs
    one of PREFILTER_TERMS and a digit, a number word or a school-stage word)."""
    if not text:
        return False
    low = text.lower()
    return _ANCHORS.search(low) is not None and _SIGNAL.search(low) is not None


# ---- reading ages
def _as_int(token: str) -> int:
    token = token.strip().lower()
    return int(token) if token.isdigit() else NUMBER_WORDS[token]


def _years(n: int, unit: str | None) -> int:
    u = (unit or "").strip(" -").lower()
    if u.startswith("mo"):
        return n // 12
    if u.startswith(("w", "d")):
        return 0
    return n


def _ordinal(token: str) -> int:
    token = token.lower()
    return ORDINAL_WORDS[token] if token in ORDINAL_WORDS else int(re.match(r"\d+", token).group())


def _birth(m: re.Match, today: dt.date) -> tuple[int, int] | None:
    raw = m.group("date")
    if m.group("year"):
        y = int(m.group("year"))
        if y > today.year:
            return None
        return max(today.year - y - 1, 0), today.year - y
    born = parse_date(raw)
    if born is None:  # month names
        parts = re.findall(r"[a-z]+|\d+", raw.lower())
        nums = [int(p) for p in parts if p.isdigit()]
        month = next((MONTHS.get(p[:3]) for p in parts if not p.isdigit() and p[:3] in MONTHS), None)
        if month is None or len(nums) != 2:
            return None
        try:
            born = dt.date(nums[1], month, nums[0])
        except ValueError:
            return None
    if born > today:
        return None
    age = age_on(born, today)
    return age, age


@dataclass(frozen=True)
class ChildClue:
    """One clue. `age`: the stated age, or the lower end of the implied range; None for a school stage
    with no age (then `age_range` holds the stage's range). `age_range`: (lowest, highest) age the clue
    is consistent with."""
    age: int | None
    score: float
    start: int
    end: int
    kind: str
    age_range: tuple[int, int] | None = None
    pattern: str = ""

    def below(self, threshold: int) -> bool:
        low = self.age if self.age is not None else (self.age_range[0] if self.age_range else None)
        return low is not None and low < threshold


class ChildAgeRecognizer(_PatternRecognizer):
    """Presidio recognizer for CHILD_AGE. Its patterns are `RULES`; `analyze` reads the age out of each
    match, drops matches that are not a person's age, and puts {"age", "age_range", "kind"} in every
    result's `recognition_metadata` (scores are final: Presidio's context enhancer is told to skip them).
    No NLP artifacts needed. `today` (default: the current date) dates birth years."""

    def __init__(self, today: dt.date | None = None):
        super().__init__(
            supported_entity=ENTITY,
            name="LetheChildAgeRecognizer",
            supported_language="en",
            patterns=[_Pattern(r.name, r.regex, r.score) for r in RULES],
            context=list(CONTEXT_WORDS),
            global_regex_flags=_FLAGS,
        )
        self.today = today

    def analyze(self, text, entities=None, nlp_artifacts=None, regex_flags=None, *, today=None):
        if entities and ENTITY not in entities:
            return []
        return [self._result(c) for c in self.clues(text, today=today)]

    def clues(self, text: str, *, today: dt.date | None = None) -> list[ChildClue]:
        """Every clue in `text` (any age), overlaps resolved in favour of the higher score."""
        if not text:
            return []
        today = today or self.today or dt.date.today()
        found = []
        low = text.lower()
        for pattern in self.patterns:
            rule = _RULE.get(pattern.name)
            if rule is None or not any(a in low for a in RULE_ANCHORS[rule.name]):
                continue
            for m in _COMPILED[rule.name].finditer(text):
                clue = _read(rule, m, text, today)
                if clue is not None:
                    found.append(clue)
        found.sort(key=lambda c: (-c.score, -(c.end - c.start), c.start))
        kept: list[ChildClue] = []
        for c in found:
            if all(c.end <= k.start or c.start >= k.end for k in kept):
                kept.append(c)
        return sorted(kept, key=lambda c: c.start)

    def _result(self, c: ChildClue):
        return _RecognizerResult(
            entity_type=ENTITY, start=c.start, end=c.end, score=c.score,
            recognition_metadata={
                "age": c.age, "age_range": c.age_range, "kind": c.kind, "pattern": c.pattern,
                _RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                _RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                _RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
            },
        )


def _read(rule: AgeRule, m: re.Match, text: str, today: dt.date) -> ChildClue | None:
    """The clue a match stands for, or None when it is not a person's age."""
    start, end = m.span()
    before = text[max(0, start - 60):start]
    after = text[end:end + 40]
    kind, score = rule.kind, rule.score
    groups = m.groupdict()
    unit = groups.get("unit")
    if unit and rule.unit_score is not None:
        score = rule.unit_score

    # -- the age
    read = rule.read
    if read in ("num", "num-1"):
        n = _as_int(groups["num"])
        if read == "num" and groups["num"].lower() == "one" and not unit:
            return None  # "I am one of ..."
        age = _years(n, unit)
        if read == "num-1":
            age = max(age - 1, 0)
        if n == 0 or (unit is None and _UNITS_AFTER.match(after)):
            return None
        age_range = (age, age + (1 if read == "num-1" else 0))
    elif read == "nums":
        ns = [_as_int(t) for t in re.findall(rf"\d+|{_NUMW}", groups["nums"], re.IGNORECASE)]
        if not ns or 0 in ns or (unit is None and _UNITS_AFTER.match(after)):
            return None
        ages = [_years(n, unit) for n in ns]
        age, age_range = min(ages), (min(ages), max(ages))
    elif read == "birthday":
        n = _ordinal(groups["ord"])
        if not 1 <= n <= 19:
            return None
        age, age_range = n - 1, (n - 1, n)
    elif read == "birth":
        got = _birth(m, today)
        if got is None or got[1] > 120:
            return None
        if m.group(0).lower().startswith("birthday") and got[1] == 0:
            return None  # "birthday: 12/03/<this year>" is the party, not the birth
        age, age_range = got[0], got
        if m.group("year"):
            score = 0.6
    elif read in ("uk_year", "us_grade", "scot_p"):
        n = int(groups["num"]) if groups.get("num") else _ordinal(groups["ord"])
        low = n + {"uk_year": 4, "us_grade": 5, "scot_p": 3}[read]
        age, age_range = low, (low, low + (2 if read == "scot_p" else 1))
    elif read == "stage":
        stage = groups["stage"].lower()
        age, age_range = None, STAGES[stage]
        score = _STAGE_SCORE.get(stage, score)
    else:  # pragma: no cover - a rule with an unknown reader
        raise ValueError(read)

    # -- is it a person's age at all?
    if read != "birth" and _LIMIT_AFTER.match(after):
        return None  # "3 years old and up", "aged 18+"
    if kind in ("stated_age", "birth_date", "third_person"):
        if _LIMIT_BEFORE.search(before) or _IT_BEFORE.search(before):
            return None
        if kind != "third_person" and _THING_BEFORE.search(before):
            return None
        if kind == "stated_age" and _THING_AFTER.match(after):
            return None
        if kind == "stated_age" and _PAST_BEFORE.search(before):
            return None  # "when I was 12 years old"
    if kind == "stated_age":
        if _I_A_BEFORE.search(before):
            kind, score = "first_person", 0.9  # "I'm a 12 year old", "as a 12-year-old"
        elif _MY_BEFORE.search(before):
            kind, score = "about_child", 0.8  # "my 10 year old", "our 6-year-old son"
        elif _PERSON_AFTER.match(after):
            score += 0.05
    if kind == "school_year":
        if read == "us_grade" and (_GRADE_THING_AFTER.match(after) or _GRADE_BEFORE_BAD.search(before)):
            return None
        if rule.name == "us_grade_n" and _GRADE_N_AFTER_BAD.match(after):
            return None
        if _YEAR_AFTER_BAD.match(after) or _PAST_CLAUSE.search(before):
            return None
        school_after = _SCHOOL_AFTER.match(after) is not None or bool(groups.get("grader"))
        if rule.name in ("uk_year", "us_grade_n"):
            if school_after:
                pass
            elif _SCHOOL_BEFORE.search(before) and not _WEAK_SCHOOL_BEFORE.search(before):
                score -= 0.05  # "my year 6"
            elif re.search(r"\bin\s+$", before):
                score -= 0.1  # "in year 7"
            else:
                return None  # a bare "year 3" / "a grade 5"
        if _TEACHES_BEFORE.search(before):
            return None  # "I teach 3rd grade", "I'm a Year 6 teacher"
        if _TEACHER_AFTER.match(after):
            score -= 0.15  # "Year 6 teacher": maybe an adult writing
        if _I_IN_BEFORE.search(before):
            score += 0.05
    if kind == "school_stage":
        if _PAST_CLAUSE.search(before) or _ADULT_AFTER.match(after):
            return None
    if kind in ("stated_age", "third_person", "school_year", "school_stage") and (
            _CONTEXT.search(before) or _CONTEXT.search(after)):
        score += 0.1
    return ChildClue(age=age, score=round(min(max(score, 0.05), 1.0), 2), start=start, end=end, kind=kind,
                     age_range=age_range, pattern=rule.name)


# ---- convenience
_default = ChildAgeRecognizer()
_by_day: dict[dt.date, ChildAgeRecognizer] = {}


def _recognizer(today: dt.date | None) -> ChildAgeRecognizer:
    if today is None:
        return _default
    if today not in _by_day:
        if len(_by_day) > 16:
            _by_day.clear()
        _by_day[today] = ChildAgeRecognizer(today=today)
    return _by_day[today]


def register(analyzer) -> ChildAgeRecognizer:
    """Add a ChildAgeRecognizer to `analyzer` (a Presidio AnalyzerEngine, e.g. from
    pii.core.detection.build_analyzer) unless it has one. Note: build_analyzer's engines are shared per
    process, so every later analysis with it will then report CHILD_AGE too."""
    for rec in analyzer.registry.recognizers:
        if isinstance(rec, ChildAgeRecognizer):
            return rec
    rec = ChildAgeRecognizer()
    analyzer.registry.add_recognizer(rec)
    return rec


def find_child_clues(text: str, threshold: int, *, analyzer=None, today: dt.date | None = None) -> list[ChildClue]:
    """Clues in `text` that it was written by or about someone younger than `threshold`: a stated (or
    lower-bound) age below it, or a school stage whose youngest pupils are below it (low score).
    With `analyzer` (a Presidio AnalyzerEngine) the text goes through it, with the recognizer ad hoc
    unless `register`ed; otherwise the recognizer runs directly (no NLP)."""
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise ValueError(f"threshold must be a positive whole age, not {threshold!r}")
    if not text or not might_mention_age(text):
        return []
    if analyzer is None:
        clues = _default.clues(text, today=today)  # (the date is a parameter: no new recognizer)
    else:
        registered = any(isinstance(r, ChildAgeRecognizer) for r in analyzer.registry.recognizers)
        results = analyzer.analyze(text=text, language="en", entities=[ENTITY], score_threshold=0.0,
                                   ad_hoc_recognizers=None if registered else [_recognizer(today)])
        clues = []
        for r in results:
            md = r.recognition_metadata or {}
            if "kind" not in md:
                continue
            clues.append(ChildClue(age=md["age"], score=r.score, start=r.start, end=r.end, kind=md["kind"],
                                   age_range=md.get("age_range"), pattern=md.get("pattern", "")))
        clues.sort(key=lambda c: c.start)
    return [c for c in clues if c.below(threshold)]


def text_test(threshold: int, min_score: float = 0.5, *, today: dt.date | None = None) -> Callable[[str], bool]:
    """For `RecordFilter(text_test=text_test(13), text_terms=PREFILTER_TERMS)`: True when the text has a
    clue below `threshold` scoring at least `min_score` (0.5 leaves out school stages and bare "in year
    7"; lower it to review those too)."""
    def test(text: str) -> bool:
        return any(c.score >= min_score for c in find_child_clues(text, threshold, today=today))
    return test
