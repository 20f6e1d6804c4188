"""Presidio offline: the analyzer factory and the subject recognizer."""
from __future__ import annotations

import pytest

from pii.core import detection
from pii.core.errors import ConfigError
from pii.core.subject import Subject, SubjectMatcher


@pytest.fixture(scope="module")
def analyzer():
    import spacy.cli

    def no_download(*a, **k):  # the factory must never reach for a model hub
        raise AssertionError("model download attempted")

    original, spacy.cli.download = spacy.cli.download, no_download
    try:
        yield detection.build_analyzer(detection.DEFAULT_MODEL)
    finally:
        spacy.cli.download = original


def test_when_default_model_used_then_ner_finds_people_offline(analyzer):
    results = detection.analyze(analyzer, "Yesterday Barack Obama met Angela Merkel in Berlin.")
    assert "PERSON" in {r.entity_type for r in results}


@pytest.mark.parametrize("text, entity", [
    ("write to bob.jones@example.com today", "EMAIL_ADDRESS"),
    ("call +44 20 7946 0999 after six", "PHONE_NUMBER"),
    ("NI number AB 12 34 56 C on file", "UK_NINO"),
])
def test_when_text_holds_a_pattern_entity_then_it_is_found(analyzer, text, entity):
    assert entity in {r.entity_type for r in detection.analyze(analyzer, text)}


def test_when_noisy_entity_types_fire_then_they_are_dropped(analyzer):
    types = {r.entity_type for r in detection.analyze(analyzer, "see www.example.com or mail a@example.com")}
    assert not types & detection.NOISY_ENTITIES


def test_when_model_is_none_then_patterns_still_run():
    engine = detection.build_analyzer(detection.NO_MODEL)
    assert "EMAIL_ADDRESS" in {r.entity_type for r in detection.analyze(engine, "mail a.b@example.org")}


def test_when_model_is_not_installed_then_config_error_says_so():
    with pytest.raises(ConfigError, match="not installed.*never downloads"):
        detection.build_analyzer("en_core_web_trf_not_here")


def test_when_subject_recognizer_is_added_then_subject_spans_are_marked(analyzer):
    matcher = SubjectMatcher(Subject.build(emails=["alice.smith@example.org"], names=["Alice Smith"]))
    text = "Smith, Alice wrote from ALICE.SMITH@example.org; Bob Jones replied."
    results = analyzer.analyze(text=text, language="en", ad_hoc_recognizers=[detection.subject_recognizer(matcher)])
    mine = {(r.entity_type, text[r.start:r.end]) for r in results if (r.recognition_metadata or {}).get("subject")}
    assert ("PERSON", "Smith, Alice") in mine


def test_when_model_configured_then_model_name_follows_config_then_env(monkeypatch):
    monkeypatch.setenv("LETHE_SPACY_MODEL", "en_core_web_md")
    assert detection.model_name({"model": "none"}) == "none"
    assert detection.model_name({}) == "en_core_web_md"
    monkeypatch.delenv("LETHE_SPACY_MODEL")
    assert detection.model_name(None) == detection.DEFAULT_MODEL
