"""pii.core.age: clues that a free text was written by or about a child (child-data purge)."""
from __future__ import annotations

import datetime as dt
import random
import time

import pytest

from pii.core import age
from pii.core.age import PREFILTER_TERMS, ChildAgeRecognizer, find_child_clues, might_mention_age, text_test
from pii.core.selection import RecordFilter

TODAY = dt.date(2026, 5, 1)
REC = ChildAgeRecognizer(today=TODAY)

# (text, age, kind): the strongest clue in the text states this age.
POSITIVES = [
    # first person
    ("I am 12", 12, "first_person"),
    ("Hi, I'm 12 and I love this game!", 12, "first_person"),
    ("I’m 11, can I still join?", 11, "first_person"),
    ("im 12 years old and my mum said ok", 12, "first_person"),
    ("I am twelve", 12, "first_person"),
    ("i am nine and a half", 9, "first_person"),
    ("I'm only 10 so please be nice", 10, "first_person"),
    ("I'm 12yo", 12, "first_person"),
    ("I am 15 years of age.", 15, "first_person"),
    ("I am 17-year-old student", 17, "first_person"),
    ("I'm a 12 year old girl from Leeds", 12, "first_person"),
    ("As a 14-year-old I think this app is great", 14, "first_person"),
    ("my age is 11", 11, "first_person"),
    ("My age: 10", 10, "first_person"),
    ("I just turned 12 last week", 12, "first_person"),
    ("I've just turned 13!", 13, "first_person"),
    ("I'm turning 13 next month", 12, "first_person"),
    ("I am almost 13", 12, "first_person"),
    ("I'm under 13, is that ok?", 12, "first_person"),
    ("I turn 13 in June", 12, "first_person"),
    ("It's my 12th birthday today", 11, "first_person"),
    ("I'm 19 and at uni", 19, "first_person"),
    ("im 10 and i like minecraft", 10, "first_person"),
    ("I'm eight", 8, "first_person"),
    # about a child of the writer
    ("my son (9) loves your app", 9, "about_child"),
    ("My daughter (7 yrs old) drew this", 7, "about_child"),
    ("my daughter, 7, wants one", 7, "about_child"),
    ("our kid is 8", 8, "about_child"),
    ("My son is 9 years old", 9, "about_child"),
    ("my youngest daughter is six", 6, "about_child"),
    ("my little brother is 10", 10, "about_child"),
    ("my son's 11", 11, "about_child"),
    ("my grandson, who is 5, broke it", 5, "about_child"),
    ("my daughter aged 4 uses it", 4, "about_child"),
    ("my son just turned 10", 10, "about_child"),
    ("my son is turning 13", 12, "about_child"),
    ("my daughter turns 13 on Friday", 12, "about_child"),
    ("my kids are 5 and 7", 5, "about_child"),
    ("our twins (6) love it", 6, "about_child"),
    ("my children, 3, 6 and 9, all use it", 3, "about_child"),
    ("my 10 year old loves it", 10, "about_child"),
    ("our 6-year-old son", 6, "about_child"),
    ("my 6 month old won't sleep", 0, "about_child"),
    ("my son (12 months) is teething", 1, "about_child"),
    ("my nephew is 8", 8, "about_child"),
    ("my daughter's 9th birthday party", 8, "about_child"),
    # someone else
    ("she is 12", 12, "third_person"),
    ("he's 9 years old", 9, "third_person"),
    ("His 10th birthday is on Sunday", 9, "third_person"),
    # an age with no person named
    ("aged 11", 11, "stated_age"),
    ("age 9", 9, "stated_age"),
    ("Age: 9", 9, "stated_age"),
    ("Name: Sam, age 14, likes football", 14, "stated_age"),
    ("11 years old", 11, "stated_age"),
    ("a 11-year-old", 11, "stated_age"),
    ("the 12 yrs old winner", 12, "stated_age"),
    ("a 9 y/o boy", 9, "stated_age"),
    ("aged 12 months", 1, "stated_age"),
    ("a 6-week-old baby", 0, "stated_age"),
    ("aged 65", 65, "stated_age"),
    ("Applicant aged 40", 40, "stated_age"),
    # birth dates (TODAY = 2026-05-01)
    ("born 12/03/2014", 12, "birth_date"),
    ("DOB: 2015-06-30", 10, "birth_date"),
    ("d.o.b. 01.01.2016", 10, "birth_date"),
    ("Date of birth: 3 March 2017", 9, "birth_date"),
    ("she was born on March 3rd, 2017", 9, "birth_date"),
    ("born in 2014", 11, "birth_date"),
    ("born in 1985", 40, "birth_date"),
    # school years: UK Year N -> N+4, US grade N -> N+5, Scottish PN -> N+3 (the lower age)
    ("Year 6 pupil", 10, "school_year"),
    ("my Year 6 student", 10, "school_year"),
    ("she's in year 7", 11, "school_year"),
    ("I'm in Year 8 at St Mary's", 12, "school_year"),
    ("Year 13 students", 17, "school_year"),
    ("my year 3 daughter", 7, "school_year"),
    ("grade 5 student", 10, "school_year"),
    ("he is in grade 5", 10, "school_year"),
    ("5th grade", 10, "school_year"),
    ("a fifth grade class", 10, "school_year"),
    ("my 3rd grader", 8, "school_year"),
    ("my son is in P5", 8, "school_year"),
    # school stages (no age; the stage's range)
    ("my son goes to primary school", None, "school_stage"),
    ("she starts kindergarten in September", None, "school_stage"),
    ("our toddler", None, "school_stage"),
    ("he is at nursery on Mondays", None, "school_stage"),
]

# Texts with no clue at all.
NEGATIVES = [
    "I am 12 minutes late",
    "I'm 5 minutes away",
    "I'm 2 days late with the payment",
    "I am 12 weeks pregnant",
    "I'm 12.50 short",
    "I'm 5'10\"",
    "I am 1 of 3 customers",
    "I am one of your customers",
    "I am 50% sure",
    "I'm 12th in the queue",
    "I'm 3 or 4 miles away",
    "I'm 12 years into my career",
    "im 12 hours ahead of you",
    "over 18",
    "You must be over 18 to apply",
    "Users under 13 are not allowed",
    "only for those aged 18+",
    "aged 18 and over",
    "for ages 5-11",
    "children aged 5-11",
    "for children aged 5 to 11",
    "Suitable for 5 year olds",
    "great gift for a 5 year old",
    "he acts like a 5 year old",
    "12 years old company",
    "We are a 12 year old business",
    "My car is 12 years old",
    "the house is 100 years old",
    "it's 12 years old",
    "Glenfiddich whisky aged 12 years",
    "my 10 year old dog",
    "my dog is 10 years old",
    "when I was 12 years old I broke my arm",
    "I went to primary school with him",
    "I was a primary school teacher",
    "We supply primary schools",
    "she is a primary school teacher",
    "Year 2024",
    "in year 2 of the contract",
    "Year 3 revenue grew",
    "in year 3 and year 4 we expect growth",
    "a year 1 warranty",
    "grade 5 steel",
    "grade 8 bolts",
    "I got a grade 5 in maths",
    "grade 5 piano",
    "pay grade 5",
    "written at a 5th grade reading level",
    "first grade quality leather",
    "room 12",
    "call me on 12/05/2024",
    "invoice 2024-05-01 for £12",
    "Order 1234 shipped",
    "The meeting is at 12 on Monday",
    "page 12 of the manual",
    "Ice Age 2 is on tonight",
    "image 12 attached",
    "my son is 6 foot tall",
    "born in London",
    "our 10th birthday as a company",
    "He is 5 minutes late",
    "version 12 years old",
    "Please see attached statement for 2023",
    "contains small parts, 3 years old and up",
    "Customers aged 65 and over get a discount",
    "For ages 13 and up",
    "Kids aged 5 to 12 go free",
    "Not suitable for children under 3 years old",
    "Minimum age: 18",
    "Age 18+",
    "Must be 13 years or older",
    "over the age of 13",
    "I'm in year 2 of my PhD",
    "I'm a year 6 teacher",
    "I teach 3rd grade",
    "I'm 3 for 3",
    "This wine was born in 2014",
    "born 2030",
    "a 15 year old house",
    "Aged 12 years in oak casks",
    "Back when I was in year 6",
    "I am 2 years older than him",
    "Age 3-5",
    "",
]

# Adults: the recognizer reports the age, find_child_clues (threshold 18) does not.
ADULTS = [
    ("aged 65", 65),
    ("I'm 34 and a nurse", 34),
    ("my brother is 25", 25),
    ("born in 1985", 40),
    ("Year 13 student", 17),  # 17-18: a child for 18 only
]


def strongest(text):
    clues = REC.clues(text, today=TODAY)
    return max(clues, key=lambda c: c.score) if clues else None


@pytest.mark.parametrize("text, expected_age, kind", POSITIVES)
def test_when_text_states_an_age_then_the_clue_carries_it(text, expected_age, kind):
    clue = strongest(text)
    assert clue is not None, text
    assert (clue.age, clue.kind) == (expected_age, kind)
    assert 0 < clue.score <= 1
    assert text[clue.start:clue.end].strip()


@pytest.mark.parametrize("text", NEGATIVES)
def test_when_text_has_no_persons_age_then_no_clue(text):
    assert REC.clues(text, today=TODAY) == []
    assert find_child_clues(text, 18, today=TODAY) == []


@pytest.mark.parametrize("text, expected_age", ADULTS)
def test_when_age_is_an_adults_then_recognizer_reports_it_but_no_child_clue(text, expected_age):
    assert strongest(text).age == expected_age
    assert find_child_clues(text, 16, today=TODAY) == []


@pytest.mark.parametrize("text, threshold, expected", [
    ("I am 12", 13, True),
    ("I am 13", 13, False),
    ("I am 13", 16, True),
    ("I am 15", 16, True),
    ("I am 16", 16, False),
    ("I am 17", 18, True),
    ("I am 18", 18, False),
    ("I'm turning 13", 13, True),   # 12 until the birthday
    ("Year 8 pupil", 13, True),     # 12-13: the lower age counts
    ("Year 9 pupil", 13, False),    # 13-14
    ("Year 11 pupil", 16, True),    # 15-16
    ("Year 12 pupil", 16, False),   # 16-17
    ("Year 13 pupil", 18, True),
    ("grade 7 student", 13, True),  # 12-13
    ("grade 8 student", 13, False),
    ("born 02/05/2013", 13, True),  # 13 on 2026-05-02: still 12 on TODAY
    ("born 01/05/2013", 13, False),  # 13 on TODAY
    ("primary school", 13, True),   # 4-11
    ("high school", 13, False),     # 14-18
    ("high school", 16, True),
    ("sixth form", 16, False),
    ("sixth form", 18, True),
    ("my kids are 11 and 14", 13, True),  # the youngest
    ("my kids are 13 and 14", 13, False),
])
def test_when_threshold_is_configured_then_only_younger_clues_count(text, threshold, expected):
    assert bool(find_child_clues(text, threshold, today=TODAY)) is expected


@pytest.mark.parametrize("text, _age, _kind", POSITIVES)
def test_when_text_yields_a_clue_then_it_passes_the_prefilters(text, _age, _kind):
    low = text.lower()
    assert any(term in low for term in PREFILTER_TERMS), text
    assert might_mention_age(text), text


@pytest.mark.parametrize("text", [t for t, _, _ in POSITIVES] + NEGATIVES + [t for t, _ in ADULTS])
def test_when_text_has_no_prefilter_term_then_recognizer_finds_nothing(text):
    # the property behind SQL LIKE pushdown, checked on the recognizer itself (no prefilter in the way)
    if not any(term in text.lower() for term in PREFILTER_TERMS) or not might_mention_age(text):
        assert REC.clues(text, today=TODAY) == []


def test_when_text_is_random_noise_then_prefilter_property_still_holds():
    rng = random.Random(7)
    words = ("I am", "im", "my son", "she is", "aged", "age:", "year", "grade", "years old", "yo", "12", "9",
             "twelve", "(", ")", ",", "5th", "primary school", "born", "2014", "in", "P5", "old", "minutes",
             "the", "company", "-", "month", "kids are", "and", "7", "turned", "birthday", "my", "13th")
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
        if REC.clues(text, today=TODAY):
            assert might_mention_age(text), text
            assert any(term in text.lower() for term in PREFILTER_TERMS), text


def test_when_a_rule_has_anchors_then_each_holds_a_prefilter_term():
    assert set(age.RULE_ANCHORS) == {r.name for r in age.RULES}
    for name, anchors in age.RULE_ANCHORS.items():
        assert anchors and all(any(t in a for t in PREFILTER_TERMS) for a in anchors), name


@pytest.mark.parametrize("text", [t for t, _, _ in POSITIVES] + NEGATIVES)
def test_when_a_rule_regex_matches_then_one_of_its_anchors_is_in_the_text(text):
    # the recognizer skips a rule whose anchors are absent: that must never hide a match
    low = text.lower()
    for rule in age.RULES:
        if age._COMPILED[rule.name].search(text):
            assert any(a in low for a in age.RULE_ANCHORS[rule.name]), (rule.name, text)


def test_when_terms_are_used_for_sql_like_then_they_are_lower_case_and_few():
    assert all(t == t.lower() and t.strip() for t in PREFILTER_TERMS)
    assert len(PREFILTER_TERMS) <= 40


@pytest.mark.parametrize("first_person, school", [
    ("I am 12", "Year 6 pupil"),
    ("I'm twelve", "I'm in year 7 at school"),
    ("It's my 12th birthday", "my son's Year 6 class teacher"),
    ("I turn 13 soon", "5th grade homework for my kid"),
    ("I'm under 13", "my son is in P5 at school"),
])
def test_when_child_speaks_for_itself_then_score_beats_school_year(first_person, school):
    fp, sy = strongest(first_person), strongest(school)
    assert (fp.kind, sy.kind) == ("first_person", "school_year")
    assert fp.score > sy.score


def test_when_scores_compared_over_tables_then_first_person_beats_every_school_clue():
    scores = {}
    for text, _, kind in POSITIVES:
        scores.setdefault(kind, []).append(strongest(text).score)
    assert min(scores["first_person"]) > max(scores["school_year"] + scores["school_stage"])
    assert min(scores["about_child"]) > max(scores["school_year"])
    assert max(scores["school_stage"]) < 0.5  # below text_test's default


def test_when_school_year_has_school_context_then_score_rises():
    assert strongest("in year 7").score < strongest("in year 7 at school with his teacher").score


def test_when_age_is_stated_in_months_then_whole_years_are_reported():
    assert [strongest(t).age for t in ("aged 18 months", "a 30-month-old", "my 3 week old")] == [1, 2, 0]


def test_when_school_stage_matches_then_age_is_none_with_range():
    clue = strongest("my son goes to primary school")
    assert clue.age is None and clue.age_range == (4, 11) and clue.score < 0.5


def test_when_clue_is_found_then_offsets_point_at_it():
    text = "Hello team, my daughter (7) filled in this form."
    clue = find_child_clues(text, 13, today=TODAY)[0]
    assert text[clue.start:clue.end] == "my daughter (7)"


def test_when_two_clues_overlap_then_the_stronger_wins():
    clues = REC.clues("im 12 years old", today=TODAY)
    assert [(c.kind, c.score) for c in clues] == [("first_person", 0.95)]


def test_when_text_has_several_clues_then_each_is_returned():
    clues = find_child_clues("I'm 12. My brother is 8 and my sister is 17.", 13, today=TODAY)
    assert [c.age for c in clues] == [12, 8]


@pytest.mark.parametrize("threshold", [0, -1, 13.5, "13", True])
def test_when_threshold_is_not_a_positive_int_then_value_error(threshold):
    with pytest.raises(ValueError):
        find_child_clues("I am 12", threshold)


def test_when_text_test_used_in_record_filter_then_child_texts_pass():
    flt = RecordFilter(text_test=text_test(13, today=TODAY), text_terms=PREFILTER_TERMS)
    assert flt.text_ok("hi im 11 and i want to win")
    assert flt.text_ok("My son (9) entered the competition")
    assert not flt.text_ok("I am 14 and I want to win")
    assert not flt.text_ok("my son goes to primary school")  # 0.25 < default 0.5
    assert not flt.text_ok("Invoice 12 for room 12")
    assert RecordFilter(text_test=text_test(13, min_score=0.2, today=TODAY),
                        text_terms=PREFILTER_TERMS).text_ok("my son goes to primary school")


def test_when_recognizer_runs_in_presidio_engine_then_metadata_carries_age():
    from pii.core import detection

    engine = detection.build_analyzer(detection.NO_MODEL)
    before = len(engine.registry.recognizers)
    clues = find_child_clues("Hi, I'm 12 and my brother is 9", 13, analyzer=engine, today=TODAY)
    assert [(c.age, c.kind) for c in clues] == [(12, "first_person"), (9, "about_child")]
    assert len(engine.registry.recognizers) == before  # ad hoc: the shared engine is not changed
    results = engine.analyze(text="my son (9)", language="en", entities=[age.ENTITY], score_threshold=0,
                             ad_hoc_recognizers=[REC])
    assert [(r.entity_type, r.recognition_metadata["age"], r.score) for r in results] == [("CHILD_AGE", 9, 0.85)]


def test_when_registered_twice_then_the_registry_holds_one_recognizer():
    from types import SimpleNamespace

    from presidio_analyzer import RecognizerRegistry

    engine = SimpleNamespace(registry=RecognizerRegistry(supported_languages=["en"]))
    first = age.register(engine)
    assert age.register(engine) is first
    assert [type(r) for r in engine.registry.recognizers] == [ChildAgeRecognizer]


def test_when_recognizer_called_directly_with_blank_nlp_then_results_are_presidio_results():
    from presidio_analyzer.nlp_engine import NlpArtifacts

    blank = NlpArtifacts(entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=None, language="en")
    results = REC.analyze("our kid is 8", [age.ENTITY], blank)
    assert [(r.entity_type, r.recognition_metadata["age"], r.recognition_metadata["kind"]) for r in results] \
        == [("CHILD_AGE", 8, "about_child")]
    assert REC.analyze("our kid is 8", ["PERSON"], blank) == []


def test_when_ten_thousand_short_texts_scanned_then_it_is_fast():
    rng = random.Random(1)
    child = [t for t, _, _ in POSITIVES]
    other = NEGATIVES[:-1] + ["Thanks for your order, it ships tomorrow.", "Please reset my password",
                              "The invoice total is £45.20 including VAT", "Call me back after 5pm",
                              "Your parcel 4411 is out for delivery", "Can I change my delivery address?"]
    texts = [rng.choice(child) if rng.random() < 0.1 else rng.choice(other) for _ in range(10_000)]
    started = time.perf_counter()
    hits = sum(1 for t in texts if find_child_clues(t, 13, today=TODAY))
    elapsed = time.perf_counter() - started
    assert hits > 300
    assert elapsed < 5.0, f"{len(texts) / elapsed:.0f} texts/s"
