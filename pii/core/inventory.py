"""The PII inventory's model: the kinds a column can hold and a column's profile (kind, entities,
confidence, sample size, written forms). No values, no I/O; the store that keeps profiles between runs is
pii.state.inventory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Column kinds. Identifier kinds are compared whole; free_text is searched inside.
EMAIL, PHONE, NAME, GIVEN_NAME, FAMILY_NAME, FREE_TEXT, OTHER = (
    "email", "phone", "name", "given_name", "family_name", "free_text", "other")
IDENTIFIER_KINDS = (EMAIL, PHONE, NAME, GIVEN_NAME, FAMILY_NAME)


@dataclass
class ColumnProfile:
    kind: str = OTHER
    entities: list[str] = field(default_factory=list)
    confidence: float = 0.0
    sample_size: int = 0
    forms: list[str] = field(default_factory=list)  # pii.core.classify.column_forms of the sample


def profile_dict(p: ColumnProfile) -> dict:
    return asdict(p)
