"""Normalisation and matching of a data subject's identifiers (pii/core/subject.py)."""
from __future__ import annotations

import random

import pytest

from pii.core.errors import InvalidIdentifier
from pii.core.subject import (
    EMAIL_RE, ENTITY_EMAIL, ENTITY_ID, ENTITY_PERSON, ENTITY_PHONE, Subject, SubjectMatcher, fold, fold_with_map,
    name_key, normalise_email, normalise_id, normalise_phone,
)

ALICE = dict(emails=["alice.smith@example.org"], names=["Alice Smith"], phones=["020 7946 0123"])
ALICE_E164 = "+442079460123"


@pytest.fixture(scope="module")
def alice() -> SubjectMatcher:
    return SubjectMatcher(Subject.build(**ALICE, ids={"customer_no": "C-10042"}))


def matcher(**kwargs) -> SubjectMatcher:
    return SubjectMatcher(Subject.build(**kwargs))


# --------------------------------------------------------------------------- emails
@pytest.mark.parametrize("value, expected", [
    ("alice.smith@example.org", "alice.smith@example.org"),
    ("  Alice.Smith@Example.ORG \t", "alice.smith@example.org"),
    ("ALICE.SMITH@EXAMPLE.ORG", "alice.smith@example.org"),
    ("<alice.smith@example.org>", "alice.smith@example.org"),
    ("mailto:alice.smith@example.org", "alice.smith@example.org"),
    ("alice.smith+news@example.org", "alice.smith+news@example.org"),  # no provider-specific rewriting
    ("o'brien@example.test", "o'brien@example.test"),
])
def test_when_email_is_written_with_spaces_or_capitals_then_it_normalises_to_trimmed_lower_case(value, expected):
    assert normalise_email(value) == expected


@pytest.mark.parametrize("value", [
    "", "   ", "alice.smith", "alice.smith@", "@example.org", "alice smith@example.org", "alice@@example.org",
    "alice@example", "alice.smith@example.org.", "alice..smith@example.org", None,
])
def test_when_email_is_not_an_address_then_normalise_returns_none(value):
    assert normalise_email(value) is None


@pytest.mark.parametrize("value, matches", [
    ("alice.smith@example.org", True),
    ("ALICE.SMITH@EXAMPLE.ORG", True),
    ("  Alice.Smith@example.org  ", True),
    ("malice.smith@example.org", False),       # near miss: one extra letter in front
    ("alice.smith@example.com", False),        # same local part, different domain
    ("alice.smith@example.org.uk", False),
    ("alice.smith@sub.example.org", False),
    ("alice.smith+news@example.org", False),   # sub-addresses are different addresses
    ("alicesmith@example.org", False),
    ("alice.smith2@example.org", False),
    ("", False),
    (None, False),
])
def test_when_field_holds_an_email_then_it_matches_only_the_same_normalised_address(alice, value, matches):
    assert alice.email_matches(value) is matches


@pytest.mark.parametrize("bad", ["not-an-email", "alice.smith@", "alice smith@example.org", "secret@@example.org"])
def test_when_email_is_invalid_then_build_raises_without_echoing_the_value(bad):
    with pytest.raises(InvalidIdentifier) as exc:
        Subject.build(emails=["alice.smith@example.org", bad])
    message = str(exc.value)
    assert "email #2" in message
    assert bad not in message
    assert bad.split("@")[0] not in message


def test_when_the_same_email_is_given_twice_in_different_case_then_it_is_kept_once():
    s = Subject.build(emails=["alice.smith@example.org", " ALICE.SMITH@example.org"])
    assert s.emails == ("alice.smith@example.org",)


# --------------------------------------------------------------------------- phones
@pytest.mark.parametrize("value", [
    "020 7946 0123", "(020) 7946-0123", "+442079460123", "+44 (0)20 7946 0123", "0044 20 7946 0123",
    "02079460123", "+44 20 7946 0123", "020-7946-0123", " 020.7946.0123 ", "+44 (0) 20-7946-0123",
])
def test_when_gb_phone_is_written_in_any_common_format_then_it_normalises_to_the_same_e164(value):
    assert normalise_phone(value) == ALICE_E164


@pytest.mark.parametrize("value, matches", [
    ("(020) 7946-0123", True),
    ("+44 (0)20 7946 0123", True),
    ("0044 20 7946 0123", True),
    ("020 7946 0124", False),   # one digit off
    ("020 7946 0132", False),   # two digits swapped
    ("020 7946 012", False),    # one digit short
    ("07700 900123", False),    # same last digits, other number
    ("+1 207 946 0123", False),  # same digits, other country
    ("", False),
    (None, False),
])
def test_when_field_holds_a_phone_then_it_matches_only_the_same_number(alice, value, matches):
    assert alice.phone_matches(value) is matches


@pytest.mark.parametrize("bad", ["12345", "call me", "+44", "n/a", "555-CALL"])
def test_when_phone_is_invalid_then_build_raises_without_echoing_the_value(bad):
    with pytest.raises(InvalidIdentifier) as exc:
        Subject.build(phones=[bad])
    message = str(exc.value)
    assert "phone #1" in message
    assert bad not in message


@pytest.mark.parametrize("region, value, expected", [
    ("US", "(202) 555-0143", "+12025550143"),
    ("US", "202-555-0143", "+12025550143"),
    ("US", "+1 202 555 0143", "+12025550143"),
    ("US", "+44 20 7946 0123", ALICE_E164),   # international numbers ignore the default region
    ("GB", "(202) 555-0143", "+442025550143"),  # the same digits read as a UK national number
    ("FR", "01 23 45 67 89", "+33123456789"),
    ("US", "020 7946 0123", None),            # a UK national number is not a US number
    ("US", "0044 20 7946 0123", None),        # 00 is not the international prefix in the US
])
def test_when_default_region_is_given_then_national_numbers_are_read_in_that_region(region, value, expected):
    assert normalise_phone(value, region) == expected


def test_when_region_is_us_then_subject_matches_us_numbers_in_fields_and_text():
    m = matcher(phones=["(202) 555-0143"], region="US")
    assert m.subject.phones == ("+12025550143",)
    assert m.phone_matches("202.555.0143")
    assert not m.phone_matches("(202) 555-0144")
    text = "Please call 202-555-0143 tomorrow"
    spans = [(text[t.start:t.end], t.entity) for t in m.find_in_text(text)]
    assert spans == [("202-555-0143", ENTITY_PHONE)]


def test_when_uk_national_number_is_given_with_us_region_then_build_names_the_region_not_the_value():
    with pytest.raises(InvalidIdentifier) as exc:
        Subject.build(phones=["020 7946 0123"], region="US")
    assert "region US" in str(exc.value)
    assert "7946" not in str(exc.value)


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("value, matches", [
    ("Alice Smith", True),
    ("alice smith", True),
    ("ALICE SMITH", True),
    ("  Alice   Smith ", True),
    ("Smith, Alice", True),
    ("SMITH,ALICE", True),
    ("Smith Alice", True),
    ("Alice B. Smith", True),     # an initial does not count
    ("Alicia Smith", False),
    ("Alice Smithson", False),
    ("Malice Smith", False),
    ("Alice", False),
    ("A. Smith", False),
    ("Alice Jane Smith", False),  # a second given name is another word
    ("Alice Smith-Jones", False),
    ("", False),
    (None, False),
])
def test_when_field_holds_a_name_then_case_order_and_initials_do_not_matter_but_other_words_do(alice, value, matches):
    assert alice.name_matches(value) is matches


@pytest.mark.parametrize("subject_name, value, matches", [
    ("Zoë Müller", "Zoe Muller", True),
    ("Zoë Müller", "ZOË MÜLLER", True),
    ("Zoë Müller", "Müller, Zoë", True),
    ("Zoe Muller", "Zoë Müller", True),
    ("Zoë Müller", "Zoe\u0308 Mu\u0308ller", True),  # decomposed accents (combining diaeresis)
    ("Zoë Müller", "Zoë Möller", False),
    ("Anna Straße", "ANNA STRASSE", True),
    ("José Núñez", "jose nunez", True),
    ("Siobhan O'Brien", "Siobhan O\u2019Brien", True),  # typographic apostrophe
    ("Siobhan O'Brien", "SIOBHAN O'BRIEN", True),
    ("Siobhan O'Brien", "Siobhan Brien", False),
])
def test_when_names_differ_only_in_accents_case_or_apostrophe_style_then_they_match(subject_name, value, matches):
    assert matcher(names=[subject_name]).name_matches(value) is matches


@pytest.mark.parametrize("bad", ["A.", "A. B.", "   ", "12 34", "-"])
def test_when_name_has_no_word_of_two_letters_then_build_raises_without_echoing_the_value(bad):
    with pytest.raises(InvalidIdentifier) as exc:
        Subject.build(names=[bad])
    assert "name #1" in str(exc.value)
    if bad.strip():
        assert bad.strip() not in str(exc.value)


def test_when_name_is_normalised_then_the_key_is_its_folded_words_of_two_or_more_letters():
    assert name_key("Smith, Alice B.") == frozenset({"alice", "smith"})
    assert name_key("ZOË  MÜLLER") == frozenset({"zoe", "muller"})
    assert name_key("Siobhan O'Brien") == name_key("Siobhan O\u2019Brien") == frozenset({"siobhan", "obrien"})


# --------------------------------------------------------------------------- ids
@pytest.mark.parametrize("ids, expected", [
    (["customer_no=123"], {"customer_no": ("123",)}),
    (["customer_no= C-10042 "], {"customer_no": ("C-10042",)}),
    (["customer_no=1", "customer_no=2", "customer_no=1"], {"customer_no": ("1", "2")}),
    (["customer_no=a=b"], {"customer_no": ("a=b",)}),   # only the first '=' separates key and value
    (["Customer-No=7"], {"Customer-No": ("7",)}),
    ({"customer_no": "C-10042"}, {"customer_no": ("C-10042",)}),
    ({"customer_no": 123}, {"customer_no": ("123",)}),
    ({"customer_no": ["1", "2"], "member_id": "3042"}, {"customer_no": ("1", "2"), "member_id": ("3042",)}),
])
def test_when_ids_are_given_as_key_value_strings_or_a_mapping_then_they_are_kept_as_trimmed_strings(ids, expected):
    assert dict(Subject.build(ids=ids).ids) == expected


@pytest.mark.parametrize("ids, reason", [
    (["customer_no"], "KEY=VALUE"),
    (["customer no=secret42"], "key must be"),
    (["=secret42"], "key must be"),
    (["1abc=secret42"], "key must be"),
    (["customer_no="], "value is empty"),
    (["customer_no=   "], "value is empty"),
    ({"customer_no": ""}, "value is empty"),
])
def test_when_id_has_a_bad_key_or_empty_value_then_build_raises_without_echoing_the_value(ids, reason):
    with pytest.raises(InvalidIdentifier) as exc:
        Subject.build(ids=ids)
    assert reason in str(exc.value)
    assert "secret42" not in str(exc.value)


@pytest.mark.parametrize("key, value, matches", [
    ("customer_no", "C-10042", True),
    ("customer_no", " c-10042 ", True),
    ("CUSTOMER_NO", "C-10042", True),     # keys name columns, compared case-insensitively
    ("customer_no", "C-100420", False),
    ("customer_no", "C-1004", False),
    ("member_id", "C-10042", False),      # the value under another key is not the id
    ("customer_no", None, False),
])
def test_when_field_is_named_by_an_id_key_then_only_that_field_matches_the_value(alice, key, value, matches):
    assert alice.id_matches(key, value) is matches


def test_when_id_value_is_numeric_then_a_numeric_field_matches_it():
    m = matcher(ids=["member_id=3042"])
    assert m.id_matches("member_id", 3042)
    assert normalise_id(3042) == "3042"
    assert not m.id_matches("member_id", 30420)


def test_when_no_identifier_is_given_then_build_raises():
    with pytest.raises(InvalidIdentifier, match="at least one identifier"):
        Subject.build()


def test_when_subject_is_built_then_manifest_round_trips():
    s = Subject.build(**ALICE, ids={"customer_no": "C-10042"})
    assert s.to_manifest() == {"email": ["alice.smith@example.org"], "name": ["Alice Smith"],
                               "phone": [ALICE_E164], "ids": {"customer_no": ["C-10042"]}}
    assert Subject.from_dict(s.to_dict()) == s
    assert not s.name_only
    assert Subject.build(names=["Alice Smith"]).name_only


# --------------------------------------------------------------------------- free text
@pytest.mark.parametrize("text, spans", [
    ("Mail ALICE.SMITH@EXAMPLE.ORG now", [("ALICE.SMITH@EXAMPLE.ORG", ENTITY_EMAIL)]),
    ("(alice.smith@example.org)", [("alice.smith@example.org", ENTITY_EMAIL)]),
    ("Invoice re-sent to malice.smith@example.org.", []),
    ("Write to alice.smith@example.com instead", []),
    ("Called Alice on 020 7946 0123 about the refund", [("020 7946 0123", ENTITY_PHONE)]),
    ("Ring +44 (0)20 7946 0123 today", [("+44 (0)20 7946 0123", ENTITY_PHONE)]),
    ("tel: 0044 20 7946 0123.", [("0044 20 7946 0123", ENTITY_PHONE)]),
    ("Left a voicemail on 020 7946 0124.", []),
    ("Spoke to Alice Smith today", [("Alice Smith", ENTITY_PERSON)]),
    ("Spoke to alice B. smith today", [("alice B. smith", ENTITY_PERSON)]),
    ("Spoke to Alice B Smith today", [("Alice B Smith", ENTITY_PERSON)]),
    ("SMITH, ALICE (member)", [("SMITH, ALICE", ENTITY_PERSON)]),
    ("Alice Smithson asked about group rates", []),
    ("Alicia Smith called", []),
    ("Malice Smith called", []),
    ("Alice and Bob Smith", []),
    ("Customer C-10042 complained", [("C-10042", ENTITY_ID)]),
    ("Customer C-100421 complained", []),
    ("Alice Smith <alice.smith@example.org>",
     [("Alice Smith", ENTITY_PERSON), ("alice.smith@example.org", ENTITY_EMAIL)]),
])
def test_when_text_mentions_the_subject_then_find_in_text_returns_exact_spans(alice, text, spans):
    found = alice.find_in_text(text)
    assert [(text[t.start:t.end], t.entity) for t in found] == spans
    for t in found:
        assert t.strong is (t.entity != ENTITY_PERSON)  # a name alone is weak evidence


@pytest.mark.parametrize("subject_name, text, span", [
    ("Alice Smith", "Straße 5: alice  smith rang", "alice  smith"),        # ß folds to two letters before it
    ("Alice Smith", "Größe ßß: Smith, Alice", "Smith, Alice"),
    ("Alice Smith", "\ufb01le: Alice Smith", "Alice Smith"),              # the ligature ﬁ folds to two letters
    ("Alice Smith", "Ali\u0301ce Smith wrote", "Ali\u0301ce Smith"),      # a combining accent folds to nothing
    ("Alice Smith", "😀 Zoë met ALICE SMITH", "ALICE SMITH"),
    ("Anna Straße", "Notiz: ANNA STRASSE kam", "ANNA STRASSE"),
    ("Anna Strasse", "Notiz: anna straße kam.", "anna straße"),          # the span ends after the ß
    ("Zoë Müller", "Größenwahn: MÜLLER, ZOË!", "MÜLLER, ZOË"),
    ("Siobhan O'Brien", "Met Siobhan O\u2019Brien at the fair", "Siobhan O\u2019Brien"),
])
def test_when_folding_changes_the_text_length_then_spans_still_point_into_the_original_text(subject_name, text, span):
    found = matcher(names=[subject_name]).find_in_text(text)
    assert [text[t.start:t.end] for t in found] == [span]


def test_when_text_is_folded_then_every_folded_character_maps_to_its_original_character():
    text = "Straße ﬁ Zoë Ali\u0301ce O\u2019B"
    folded, index = fold_with_map(text)
    assert folded == fold(text) == "strasse fi zoe alice o'b"
    assert len(index) == len(folded)
    assert index == sorted(index)
    for i, ch in enumerate(folded):
        assert fold(text[index[i]]).count(ch) >= 1


def test_when_text_is_empty_or_unrelated_then_nothing_is_found_and_could_mention_is_false(alice):
    for text in ("", None, "Nothing to see here", "Renewal due in March; call 07700 900412"):
        assert alice.find_in_text(text) == []
        assert not alice.could_mention(text)


# --------------------------------------------------------------------------- could_mention never hides a find
_SUBJECTS = {
    "alice": dict(**ALICE, ids={"customer_no": "C-10042"}),
    "siobhan": dict(names=["Siobhan O'Brien"], phones=["(202) 555-0143"], ids={"ref": "Müller-42"}, region="US"),
    "zoe": dict(names=["Zoë Straße"], emails=["zoe.strasse@example.test"]),
    "zoe_idn": dict(emails=["zoë@exämple.com"]),
}
_FRAGMENTS = {
    "alice": [
        "alice.smith@example.org", "ALICE.SMITH@EXAMPLE.ORG", "Alice.Smith@Example.org", "alice.\u017fmith@example.org",
        "malice.smith@example.org", "alice.smith@example.com", "020 7946 0123", "(020) 7946-0123",
        "+44 (0)20 7946 0123", "0044 20 7946 0123", "02079460123", "020 7946 0124", "07700 900123",
        "Alice Smith", "ALICE SMITH", "Smith, Alice", "alice B. smith", "Alîce Smith", "Alicia Smith",
        "Alice Smithson", "C-10042", "c-10042", "C-100420", "Alice", "Smith",
    ],
    "siobhan": [
        "Siobhan O'Brien", "SIOBHAN O\u2019BRIEN", "O'Brien, Siobhan", "Siobhan OBrien", "Siobhán O'Brien",
        "Siobhan Brien", "(202) 555-0143", "+1 202 555 0143", "202.555.0143", "202-555-0144",
        "Müller-42", "MÜLLER-42", "Muller-42", "Müller-420", "O'Brien",
    ],
    "zoe": [
        "Zoë Straße", "ZOE STRASSE", "Straße, Zoë", "zoe strasse", "Zoe\u0308 Stra\u00dfe", "Zoë Strasser",
        "zoe.strasse@example.test", "ZOE.STRASSE@EXAMPLE.TEST", "Zoë", "Straße",
    ],
    "zoe_idn": [
        "zoë@exämple.com", "ZOË@EXÄMPLE.COM", "zoë@xn--exmple-cua.com", "ZOË@XN--EXMPLE-CUA.COM",
        "zoe\u0308@exa\u0308mple.com", "zoe@example.com", "zoë@example.com", "zoë@exämple.co", "<zoë@exämple.com>",
        "mailto:zoë@exämple.com", "zoë", "exämple.com",
    ],
}
_NOISE = [
    "Called", "about the refund", "re:", "Größe", "ß", "\ufb01", "😀", "café", "naïve", "\u0301", ",", ".",
    ";", "(", ")", "-", "\n", "  ", "\t", "42", "2024-04-18", "07700 900412", "＃", "１２３", "²", "'", "\u2019",
    "mail:", "<", ">", "@", "and", "wrote", "ﬀ", "İ",
]


@pytest.mark.parametrize("who", sorted(_SUBJECTS))
def test_when_find_in_text_finds_a_mention_then_could_mention_is_true_for_many_generated_texts(who):
    m = matcher(**_SUBJECTS[who])
    rng = random.Random(f"could-mention-{who}")
    pool = _FRAGMENTS[who] + _NOISE
    found_any = 0
    for _ in range(1500):
        parts = [rng.choice(pool) for _ in range(rng.randrange(1, 8))]
        text = rng.choice([" ", "", "\n", ", "]).join(parts)
        found = m.find_in_text(text)
        if found:
            found_any += 1
            assert m.could_mention(text), text
        for t in found:  # every span is, on its own, one of the subject's identifiers
            piece = text[t.start:t.end]
            if t.entity == ENTITY_EMAIL:
                assert normalise_email(piece) in m.subject.emails
            elif t.entity == ENTITY_PHONE:
                assert normalise_phone(piece, m.subject.region) in m.subject.phones
            elif t.entity == ENTITY_PERSON:
                assert any(name_key(piece) == name_key(n) for n in m.subject.names), piece
            else:
                assert any(normalise_id(piece) in {normalise_id(v) for v in vs} for vs in m.subject.ids.values())
    assert found_any > 300  # the loop really exercised the property


@pytest.mark.parametrize("text", [
    "Met Siobhan O'Brien today",          # name tokens carry no apostrophe: "obrien"
    "Met SIOBHAN O\u2019BRIEN today",
    "ref MÜLLER-42",                      # an accented id that folding would change
    "ref müller-42",
])
def test_when_name_has_an_apostrophe_or_id_has_accents_then_could_mention_agrees_with_find_in_text(text):
    m = matcher(**_SUBJECTS["siobhan"])
    assert m.find_in_text(text)
    assert m.could_mention(text)


# --------------------------------------------------------------------------- internationalised emails (issue 12, item 9)
ZOE_KEY = "zo\u00eb@xn--exmple-cua.com"


@pytest.mark.parametrize("value", [
    "zoë@exämple.com",
    "ZOË@EXÄMPLE.COM",
    "zoë@xn--exmple-cua.com",
    "ZOË@XN--EXMPLE-CUA.COM",
    "  <zoe\u0308@exa\u0308mple.com> ",   # decomposed (NFD) as some mail clients write it
    "mailto:Zoë@Exämple.Com",
])
def test_when_internationalised_email_is_written_any_way_then_it_normalises_to_one_key(value):
    assert normalise_email(value) == ZOE_KEY


def test_when_internationalised_emails_are_given_then_the_subject_keeps_one_key_and_matches_every_form():
    subject = Subject.build(emails=["zoë@exämple.com", "ZOË@EXÄMPLE.COM", "zoë@xn--exmple-cua.com"])
    assert subject.emails == (ZOE_KEY,)
    m = SubjectMatcher(subject)
    for form in ("zoë@exämple.com", "Zoë@EXÄMPLE.com", "zoë@xn--exmple-cua.com", "zoe\u0308@exämple.com"):
        assert m.email_matches(form), form
    assert not m.email_matches("zoe@example.com")  # the accents are part of the address
    assert not m.email_matches("zoë@example.com")
    # prefilters (SQL LIKE, CSV blocks) see both the Unicode and the A-label spelling
    assert {"zoë@exämple.com", ZOE_KEY} <= set(m.email_tokens)


def test_when_idn_domains_differ_in_tld_then_unicode_tld_is_encoded_too():
    assert normalise_email("иван@пример.рф") == "иван@xn--e1afmkfd.xn--p1ai"
    assert normalise_email("ИВАН@XN--E1AFMKFD.XN--P1AI") == "иван@xn--e1afmkfd.xn--p1ai"


@pytest.mark.parametrize("text", [
    "Please erase zoë@exämple.com today",
    "From: Zoë <ZOË@EXÄMPLE.COM>",
    "wrote to zoë@xn--exmple-cua.com.",
    "(zoe\u0308@exa\u0308mple.com)",
    "«zoë@exämple.com»",
])
def test_when_text_holds_an_internationalised_address_then_it_is_found_at_its_position(text):
    m = matcher(emails=["zoë@exämple.com"])
    found = m.find_in_text(text)
    assert [t.entity for t in found] == [ENTITY_EMAIL]
    assert normalise_email(text[found[0].start:found[0].end]) == ZOE_KEY
    assert m.could_mention(text)


@pytest.mark.parametrize("text", ["zoe@example.com", "zoë@exämple.co", "bzoë@exämple.com", "zoë@exämple.community"])
def test_when_text_holds_a_lookalike_of_an_internationalised_address_then_nothing_is_found(text):
    assert matcher(emails=["zoë@exämple.com"]).find_in_text(text) == []


def test_when_an_internationalised_domain_is_not_valid_idna_then_the_error_names_the_kind_not_the_value():
    bad = "zoë@" + "ä" * 70 + ".com"  # a label longer than 63 characters once encoded
    with pytest.raises(InvalidIdentifier, match="email #1 .*not a valid internationalised domain name") as exc:
        Subject.build(emails=[bad])
    assert "zo" not in str(exc.value) and "ä" not in str(exc.value)
    assert normalise_email(bad) is None


@pytest.mark.parametrize("value", ["zoë@exämple", "zoë@@exämple.com", "zo ë@exämple.com", "zoë@-exämple.com", "@exämple.com"])
def test_when_an_internationalised_value_is_not_an_address_then_it_is_refused(value):
    assert normalise_email(value) is None
    with pytest.raises(InvalidIdentifier, match="email #1 is not a valid email address"):
        Subject.build(emails=[value])


def test_when_email_is_ascii_then_tokens_and_matching_are_as_before():
    m = matcher(emails=["Alice.Smith@Example.ORG"])
    assert m.email_tokens == ("alice.smith@example.org",)
    assert [t.entity for t in m.find_in_text("mail ALICE.SMITH@EXAMPLE.ORG now")] == [ENTITY_EMAIL]
    # ASCII text finds exactly what it found before; Unicode letters next to an ASCII address still bound it
    assert [x.group(0) for x in EMAIL_RE.finditer("a@b.co, x.y+z@mail.example.org; bad@x")] == \
        ["a@b.co", "x.y+z@mail.example.org"]
    assert [x.group(0) for x in EMAIL_RE.finditer("café@example.com")] == ["café@example.com"]
