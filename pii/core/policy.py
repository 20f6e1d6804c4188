"""Erasure policy: for each finding, what happens to the subject's data, and why.

A policy file (YAML, named by ``policy:`` in stores.yaml) holds a list of rules; the first rule that
matches a finding decides. Without a file, or when no rule matches, the default applies:

- rows about the subject (``identifier`` or ``linked`` findings) are deleted;
- mentions of the subject inside other people's free text (``text`` findings) are redacted in place:
  only the subject's spans become ``[redacted]``, the rest of the row is kept;
- weak findings (a name alone, a fuzzy text match) never get an action on their own: they go to review,
  unless a person explicitly includes them (``decide(..., include_weak=True)``).

```yaml
rules:
  - store: crm              # glob on the store name (default "*")
    container: payments     # glob on the table (schema.table or table) or file path (default "*")
    action: retain          # delete | anonymise | retain | redact
    reason: "Invoices kept for tax"                                # required for retain
    legal_basis: "Legal obligation, Art. 6(1)(c); HMRC 6 years"    # required for retain
    until: 2032-04-05       # optional; after this date the rule no longer applies
    anonymise:              # for anonymise (and optionally retain): column -> operator
      email: {operator: hash}
      phone: {operator: mask, chars_to_mask: 6, from_end: true, masking_char: "*"}
    match: [identifier, linked]   # optional: match kinds the rule applies to (default all)
    override_retained: "..."      # optional: why this rule deletes/anonymises what stores.yaml declares retained
```

**Declared retention.** A store's own stores.yaml metadata may declare that a container is kept for a period
under a legal basis (``metadata: {retained: {payments: {period: 6y, legal_basis: ..., reason: ...}}}``, the
container a glob named as rules name containers). Where no rule matches, such a container is retained
(reason and legal basis from the declaration; no ``until``: the period's start, such as "after membership
ends", is not known to Lethe). A rule that deletes, anonymises or redacts a declared container keeps its
action, but the decision carries a ``conflict`` naming the declaration, which the plan shows to the approver;
a rule with ``override_retained: <why>`` records that the contradiction is deliberate (the plan shows it as
an override, with that reason, instead of a warning). A legal hold still comes first.

Field operators are small named classes looked up by name (`OPERATORS`): replace, redact, mask, hash,
encrypt, null, and for statistics generalise_date (a date to its year or month) and postcode_district (a UK
postcode to its outward code). A column may name its operator alone (``email: hash``); YAML's ``null`` (``notes: null`` or
``{operator: null}``) is the null operator. Secrets (the HMAC key of
``hash``, the AES key of ``encrypt``) come from the environment, never from the policy file. Rule
positions are reported as ``rules[i]``, counted from 0 like `Decision.rule_index`. No error message
carries a personal value: only the policy file, the rule position, the column and the operator.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import posixpath
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping


from pii.core.config import read_yaml
from pii.core.errors import ConfigError
from pii.core.findings import MATCH_ORDER, WEAK, Finding

DELETE, ANONYMISE, RETAIN, REDACT, REVIEW = "delete", "anonymise", "retain", "redact", "review"
HOLD = "hold"
RULE_ACTIONS = (DELETE, ANONYMISE, RETAIN, REDACT)  # what a rule may say
ACTIONS = RULE_ACTIONS + (REVIEW, HOLD)  # what a decision may say
HOLD_KEYS = ("store", "container", "reason", "until")
RULE_KEYS = ("store", "container", "action", "reason", "legal_basis", "until", "anonymise", "match",
             "override_retained")
REDACTED = "[redacted]"
HASH_KEY_ENV = "LETHE_HASH_KEY"
ENCRYPT_KEY_ENV = "LETHE_ENCRYPT_KEY"
DEFAULT_SOURCE = "default policy"


# --------------------------------------------------------------------------- field operators
class FieldOperator:
    """One way of changing a single field value. Subclasses declare `name` and `params` (param -> check).

    `config` is validated once, when the policy loads; `apply(None)` is always None (a missing value
    stays missing). `where` names the policy file, rule and column, for error messages.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Callable[[Any], bool]]] = {}
    param_help: ClassVar[dict[str, str]] = {}
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Mapping[str, Any], where: str):
        self.where = where
        unknown = [k for k in config if k not in self.params]
        if unknown:
            known = ", ".join(self.params) or "none"
            raise ConfigError(
                f"{where}: operator {self.name} has no parameter {', '.join(repr(str(k)) for k in unknown)}; "
                f"its parameters: {known}"
            )
        merged = {**self.defaults, **dict(config)}
        for key, check in self.params.items():
            if key in merged and not check(merged[key]):
                raise ConfigError(f"{where}: operator {self.name}: {key} must be {self.param_help[key]}")
        self.config = merged

    def apply(self, value: Any) -> Any:
        return None if value is None else self.transform(value)

    def transform(self, value: Any) -> Any:  # pragma: no cover - every operator overrides it
        raise NotImplementedError

    def required_env(self) -> tuple[str, ...]:
        return ()

    def _secret(self, env_name: str) -> bytes:
        value = os.environ.get(env_name)
        if not value:
            raise ConfigError(
                f"{self.where}: operator {self.name} needs a secret key in the environment variable "
                f"{env_name}, which is not set"
            )
        return value.encode("utf-8")


OPERATORS: dict[str, type[FieldOperator]] = {}


def register_operator(cls: type[FieldOperator]) -> type[FieldOperator]:
    """Make an operator available to policy files under `cls.name`."""
    OPERATORS[cls.name] = cls
    return cls


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_env_name(v) -> bool:
    return isinstance(v, str) and v.replace("_", "a").isalnum() and not v[:1].isdigit()


def _presidio(name: str):
    from presidio_anonymizer import operators as ops  # imported on use: loading a policy stays cheap

    return {"replace": ops.Replace, "redact": ops.Redact, "mask": ops.Mask,
            "encrypt": ops.Encrypt, "decrypt": ops.Decrypt}[name]()


@register_operator
class ReplaceOperator(FieldOperator):
    """The value becomes a fixed text (Presidio's replace)."""

    name = "replace"
    params = {"new_value": _is_str}
    param_help = {"new_value": "a string"}
    defaults = {"new_value": "<erased>"}

    def transform(self, value):
        new_value = self.config["new_value"]
        # Presidio's replace turns an empty new_value into "<ENTITY>"; an empty string here means empty
        return new_value if new_value == "" else _presidio("replace").operate(_text(value), {"new_value": new_value})


@register_operator
class RedactOperator(FieldOperator):
    """The value becomes empty (Presidio's redact)."""

    name = "redact"

    def transform(self, value):
        return _presidio("redact").operate(_text(value), {})


@register_operator
class MaskOperator(FieldOperator):
    """Some characters are overwritten (Presidio's mask). Without chars_to_mask, all of them."""

    name = "mask"
    params = {
        "chars_to_mask": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "from_end": lambda v: isinstance(v, bool),
        "masking_char": lambda v: isinstance(v, str) and len(v) == 1,
    }
    param_help = {"chars_to_mask": "a whole number of 0 or more", "from_end": "true or false",
                  "masking_char": "a single character"}
    defaults = {"chars_to_mask": None, "from_end": False, "masking_char": "*"}

    def transform(self, value):
        text = _text(value)
        count = self.config["chars_to_mask"]
        params = {"chars_to_mask": len(text) if count is None else count,
                  "from_end": self.config["from_end"], "masking_char": self.config["masking_char"]}
        return _presidio("mask").operate(text, params)


@register_operator
class HashOperator(FieldOperator):
    """Keyed HMAC-SHA256 (hex) of the value's text: stable across runs, no dictionary attack without the key.

    Presidio's own hash is unkeyed (or randomly salted), hence this one."""

    name = "hash"
    params = {"key_env": _is_env_name}
    param_help = {"key_env": "the name of an environment variable"}
    defaults = {"key_env": HASH_KEY_ENV}

    def transform(self, value):
        data = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else _text(value).encode("utf-8")
        return hmac.new(self._secret(self.config["key_env"]), data, hashlib.sha256).hexdigest()

    def required_env(self):
        return (self.config["key_env"],)


@register_operator
class EncryptOperator(FieldOperator):
    """AES encryption (Presidio's encrypt, reversible with its decrypt and the same key).

    The key is the environment variable's text: 16, 24 or 32 bytes in UTF-8 (AES-128/192/256)."""

    name = "encrypt"
    params = {"key_env": _is_env_name}
    param_help = {"key_env": "the name of an environment variable"}
    defaults = {"key_env": ENCRYPT_KEY_ENV}

    def transform(self, value):
        env_name = self.config["key_env"]
        key = self._secret(env_name)
        if len(key) not in (16, 24, 32):
            raise ConfigError(
                f"{self.where}: operator encrypt: the key in {env_name} must be 16, 24 or 32 bytes "
                f"(AES-128, -192 or -256); it has {len(key)}"
            )
        return _presidio("encrypt").operate(_text(value), {"key": key})

    def required_env(self):
        return (self.config["key_env"],)


@register_operator
class NullOperator(FieldOperator):
    """The value becomes NULL (SQL) or an empty field (CSV)."""

    name = "null"

    def transform(self, value):
        return None


@register_operator
class GeneraliseDateOperator(FieldOperator):
    """A date keeps only its year (or year and month): "1984-06-02" -> "1984". Dates stay dates (the first
    day of the year or month) so typed columns accept them; text that holds no date becomes empty."""

    name = "generalise_date"
    params = {"to": lambda v: v in ("year", "month")}
    param_help = {"to": "year or month"}
    defaults = {"to": "year"}

    def transform(self, value):
        from pii.core.dates import parse_date

        d = parse_date(value)
        month = self.config["to"] == "month"
        if isinstance(value, (_dt.date, _dt.datetime)):
            if d is None:
                return None
            return _dt.date(d.year, d.month if month else 1, 1)
        if d is None:
            return ""
        return f"{d.year:04d}-{d.month:02d}" if month else f"{d.year:04d}"


@register_operator
class PostcodeDistrictOperator(FieldOperator):
    """A UK postcode keeps only its outward code (district): "SW1A 1AA" -> "SW1A". Anything that is not a
    postcode becomes empty (a value we cannot generalise safely is removed)."""

    name = "postcode_district"

    def transform(self, value):
        import re

        text = _text(value).strip().upper()
        m = re.fullmatch(r"([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9][A-Z]{2})", text)
        if m:
            return m.group(1)
        m = re.fullmatch(r"[A-Z]{1,2}[0-9][A-Z0-9]?", text)  # already a district
        return m.group(0) if m else ""


@dataclass(frozen=True)
class OperatorSpec:
    """A field operator as a policy names it: serialisable into a stored plan, rebuilt on execution."""

    operator: str
    params: Mapping[str, Any] = field(default_factory=dict)
    where: str = field(default="", compare=False)  # policy file, rule and column: for error messages
    _op: FieldOperator = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        cls = OPERATORS.get(self.operator)
        if cls is None:
            raise ConfigError(
                f"{self.where}: unknown operator {self.operator!r}; known operators: {', '.join(OPERATORS)}"
            )
        object.__setattr__(self, "_op", cls(self.params, self.where))  # validates the parameters once

    def apply(self, value: Any) -> Any:
        return self._op.apply(value)

    def required_env(self) -> tuple[str, ...]:
        return self._op.required_env()

    def check_environment(self) -> None:
        """Raise ConfigError naming the variable when a secret this operator needs is not set."""
        for name in self.required_env():
            self._op._secret(name)

    def to_dict(self) -> dict:
        return {"operator": self.operator, **dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str, where: str = "") -> "OperatorSpec":
        if data is None:  # YAML reads `email: null` as None: the null operator
            return cls(NullOperator.name, {}, where)
        if isinstance(data, str):  # shorthand: `email: hash`
            return cls(data, {}, where)
        if not isinstance(data, Mapping) or "operator" not in data:
            raise ConfigError(f"{where}: must be an operator name or a mapping with 'operator:'")
        params = {str(k): v for k, v in data.items() if k != "operator"}
        name = NullOperator.name if data["operator"] is None else data["operator"]  # {operator: null}
        if not isinstance(name, str):
            raise ConfigError(f"{where}: 'operator' must be a name; known operators: {', '.join(OPERATORS)}")
        return cls(name, params, where)


def apply_field_ops(record: Mapping[str, Any], field_ops: Mapping[str, OperatorSpec]) -> dict:
    """A new record with each operator applied to its column (names compared case-insensitively).

    Columns named in `field_ops` that the record lacks are ignored; other columns are copied unchanged."""
    ops = {str(col).casefold(): spec for col, spec in field_ops.items()}
    out = {}
    for col, value in record.items():
        spec = ops.get(str(col).casefold())
        out[col] = spec.apply(value) if spec is not None else value
    return out


# --------------------------------------------------------------------------- text redaction
def redact_text(text: str | None, matcher, replacement: str = REDACTED) -> str | None:
    """`text` with every span of the subject (from `matcher.find_in_text`) replaced, the rest kept."""
    if not text:
        return text
    spans = sorted((m.start, m.end) for m in matcher.find_in_text(text) if m.end > m.start)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:  # overlapping or touching: one redaction
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = str(text)
    for start, end in reversed(merged):  # right to left: earlier positions stay valid
        out = out[:start] + replacement + out[end:]
    return out


def redact_fields(record: Mapping[str, Any], matcher, replacement: str = REDACTED) -> dict:
    """A new record with the subject's spans redacted in every text field; other values unchanged."""
    return {col: redact_text(v, matcher, replacement) if isinstance(v, str) else v for col, v in record.items()}


# --------------------------------------------------------------------------- rules and decisions
@dataclass
class Decision:
    """What happens to one finding. `rule_index` is the rule's position in the file (from 0), None for
    the default. For "review", `proposed` is what would happen if a person includes the finding."""

    action: str
    rule_index: int | None = None
    reason: str = ""
    legal_basis: str | None = None
    until: _dt.date | None = None
    field_ops: dict[str, OperatorSpec] = field(default_factory=dict)
    proposed: "Decision | None" = None
    # an erasing action on a container stores.yaml declares retained: which declaration it contradicts
    # (store/container, period, legal basis; never a value), and the rule's `override_retained` if it has one
    conflict: str | None = None
    override_reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "action": self.action,
            "rule_index": self.rule_index,
            "reason": self.reason,
            "legal_basis": self.legal_basis,
            "until": self.until.isoformat() if self.until else None,
            "field_ops": {col: spec.to_dict() for col, spec in self.field_ops.items()},
            "proposed": self.proposed.to_dict() if self.proposed else None,
            "conflict": self.conflict,
            "override_reason": self.override_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Decision":
        until = data.get("until")
        return cls(
            action=data["action"],
            rule_index=data.get("rule_index"),
            reason=data.get("reason") or "",
            legal_basis=data.get("legal_basis"),
            until=_dt.date.fromisoformat(until) if isinstance(until, str) else until,
            field_ops={col: OperatorSpec.from_dict(spec, f"stored plan, column {col!r}")
                       for col, spec in (data.get("field_ops") or {}).items()},
            proposed=cls.from_dict(data["proposed"]) if data.get("proposed") else None,
            conflict=data.get("conflict"),
            override_reason=data.get("override_reason"),
        )


@dataclass
class Rule:
    index: int
    action: str
    store: str = "*"
    container: str = "*"
    reason: str = ""
    legal_basis: str | None = None
    until: _dt.date | None = None
    field_ops: dict[str, OperatorSpec] = field(default_factory=dict)
    match: tuple[str, ...] = MATCH_ORDER
    override_retained: str | None = None  # why this rule may erase what stores.yaml declares retained

    def applies(self, finding: Finding, today: _dt.date) -> bool:
        if self.until is not None and today > self.until:
            return False  # an expired exemption: the next rule or the default decides
        if finding.match not in self.match:
            return False
        return fnmatchcase(finding.store, self.store) and container_matches(self.container, finding)

    def decision(self) -> Decision:
        return Decision(action=self.action, rule_index=self.index, reason=self.reason,
                        legal_basis=self.legal_basis, until=self.until, field_ops=dict(self.field_ops))


ERASING_ACTIONS = (DELETE, ANONYMISE, REDACT)  # what contradicts a declared retention


@dataclass(frozen=True)
class DeclaredRetention:
    """A store's own declaration (stores.yaml, ``metadata: {retained: {CONTAINER: {...}}}``) that a container
    is kept for `period` under `legal_basis`. `container` is a glob matched as policy rules match containers
    (`container_matches`). The period is shown as written; it is not turned into an `until` date, since
    the day it starts from is not known."""

    store: str
    container: str
    period: str
    legal_basis: str
    reason: str = ""

    def applies(self, finding: Finding) -> bool:
        return finding.store == self.store and container_matches(self.container, finding)

    def describe(self) -> str:
        """Which declaration, in words (store/container, period, basis): for conflicts, no values."""
        return f"{self.store}/{self.container} is declared kept {self.period} ({self.legal_basis})"

    def decision(self) -> Decision:
        declared = f"declared in stores.yaml: kept {self.period}"
        why = f"{self.reason} ({declared})" if self.reason else declared
        return Decision(RETAIN, None, why, self.legal_basis)

    def conflict(self, who: str, action: str) -> str:
        """The conflict text for `action` decided by `who` (a rule, a flow) on a container this declares."""
        return f"{self.describe()}; {who} says {action}"


def declared_retention(config) -> list["DeclaredRetention"]:
    """Every `metadata: {retained: ...}` declaration of the config's stores (checked by the config schema),
    in stores.yaml's order."""
    out: list[DeclaredRetention] = []
    for name, store in config.stores.items():
        retained = (store.metadata or {}).get("retained") or {}
        if not isinstance(retained, Mapping):
            raise ConfigError(f"store '{name}': metadata.retained must map tables/files to "
                              f"{{period, legal_basis, reason}}")
        for container, spec in retained.items():
            if not isinstance(spec, Mapping) or not spec.get("period") or not spec.get("legal_basis"):
                raise ConfigError(f"store '{name}': metadata.retained '{container}' needs 'period' and 'legal_basis'")
            out.append(DeclaredRetention(name, str(container), str(spec["period"]).strip(),
                                         str(spec["legal_basis"]).strip(), str(spec.get("reason") or "").strip()))
    return out


def declared_for(declared, finding: Finding) -> DeclaredRetention | None:
    """The first declaration (stores.yaml order) that covers `finding`'s container, if any."""
    return next((d for d in declared if d.applies(finding)), None)


def container_matches(pattern: str, finding: Finding) -> bool:
    """Glob `pattern` against the table or file a finding lies in.

    Tables: "schema.table" or the bare table name, case-insensitively (SQL names are). Files: the path as
    the finding gives it, or its last part when the pattern has no "/", case-sensitively."""
    if pattern == "*":
        return True
    loc = finding.location or {}
    if "table" in loc:
        table = str(loc["table"])
        names = {table, finding.container or table}
        if loc.get("schema"):
            names.add(f"{loc['schema']}.{table}")
        pat = pattern.casefold()
        return any(fnmatchcase(n.casefold(), pat) for n in names)
    names = {finding.container}
    for key in ("file", "path", "message_id"):
        if loc.get(key) is not None:
            names.add(str(loc[key]))
    if "/" not in pattern:
        names |= {posixpath.basename(n.replace("\\", "/")) for n in list(names)}
    return any(fnmatchcase(n, pattern) for n in names if n)


_DEFAULT = {
    "identifier": Decision(DELETE, reason="default policy: a row about the subject is deleted"),
    "linked": Decision(DELETE, reason="default policy: a row linked to the subject is deleted"),
    "text": Decision(REDACT, reason="default policy: the subject's mentions in other free text are redacted"),
}
_WEAK_REASON = ("weak evidence only (a name or a fuzzy text match, nothing corroborating it): "
                "a person must include it explicitly")


@dataclass
class Hold:
    """A legal hold: nothing in the matching stores/containers may be erased while it lasts."""

    index: int
    reason: str
    store: str = "*"
    container: str = "*"
    until: _dt.date | None = None

    def applies(self, finding: Finding, today: _dt.date) -> bool:
        if self.until is not None and today > self.until:
            return False
        return fnmatchcase(finding.store, self.store) and container_matches(self.container, finding)


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)
    source: str = DEFAULT_SOURCE
    holds: list[Hold] = field(default_factory=list)

    def decide(self, finding: Finding, today: _dt.date | None = None, include_weak: bool = False,
               declared=()) -> Decision:
        """A legal hold first ("hold": nothing happens); then the first rule that applies to `finding` on
        `today`; else a retention the store declares (`declared`: `DeclaredRetention`s, see
        `declared_retention`); else the default; "review" for weak findings unless `include_weak`. A rule
        that erases a declared container keeps its action and carries the conflict."""
        today = today or _dt.date.today()
        hold = next((h for h in self.holds if h.applies(finding, today)), None)
        if hold is not None:
            return Decision(HOLD, None, f"legal hold: {hold.reason}", until=hold.until)
        rule = next((r for r in self.rules if r.applies(finding, today)), None)
        declaration = declared_for(declared, finding)
        if rule is not None:
            decision = rule.decision()
            if declaration is not None and decision.action in ERASING_ACTIONS:
                decision.conflict = declaration.conflict(f"policy rules[{rule.index}]", decision.action)
                decision.override_reason = rule.override_retained
        elif declaration is not None:
            decision = declaration.decision()
        else:
            d = _DEFAULT[finding.match]
            decision = Decision(d.action, None, d.reason)
        if finding.strength == WEAK and not include_weak:
            return Decision(REVIEW, None, _WEAK_REASON, proposed=decision)
        return decision

    def required_env(self) -> list[str]:
        """Environment variables the policy's operators need (e.g. to check before planning)."""
        names: list[str] = []
        for rule in self.rules:
            for spec in rule.field_ops.values():
                names += [n for n in spec.required_env() if n not in names]
        return names

    def check_environment(self) -> None:
        """Raise ConfigError naming the first secret the policy needs that the environment lacks."""
        for rule in self.rules:
            for spec in rule.field_ops.values():
                spec.check_environment()


DEFAULT_POLICY = Policy()


# --------------------------------------------------------------------------- loading
def load_policy(path: str | os.PathLike | None, base_dir: str | os.PathLike | None = None) -> Policy:
    """The policy in the YAML file `path` (relative paths against `base_dir`, e.g. stores.yaml's folder),
    or the default policy when `path` is None."""
    if path is None or str(path) == "":
        return Policy()
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return parse_policy(read_yaml(p, "policy file"), str(p))


def policy_for_config(config) -> Policy:
    """The policy a `pii.core.config.Config` names (`policy:`, relative to stores.yaml's folder), or the default."""
    return load_policy(config.policy, config.base_dir) if config.policy else Policy()


def parse_policy(data: Any, source: str = "policy") -> Policy:
    where = f"policy file {source}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the top level must be a mapping with a 'rules:' list")
    unknown = [str(k) for k in data if k not in ("rules", "holds")]
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {', '.join(map(repr, unknown))}; known keys: rules, holds")
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}: 'rules' must be a list")
    raw_holds = data.get("holds") or []
    if not isinstance(raw_holds, list):
        raise ConfigError(f"{where}: 'holds' must be a list")
    return Policy([_parse_rule(raw, i, where) for i, raw in enumerate(raw_rules)], source,
                  [_parse_hold(raw, i, where) for i, raw in enumerate(raw_holds)])


def _parse_hold(raw: Any, index: int, where: str) -> Hold:
    here = f"{where}, holds[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{here}: a hold must be a mapping")
    unknown = [str(k) for k in raw if k not in HOLD_KEYS]
    if unknown:
        raise ConfigError(f"{here}: unknown key {', '.join(map(repr, unknown))}; known keys: {', '.join(HOLD_KEYS)}")
    reason = raw.get("reason")
    if not _is_str(reason) or not reason.strip():
        raise ConfigError(f"{here}: a hold needs a 'reason'")
    until = raw.get("until")
    if until is not None and not isinstance(until, _dt.date):
        try:
            until = _dt.date.fromisoformat(str(until))
        except ValueError:
            raise ConfigError(f"{here}: 'until' must be a date (YYYY-MM-DD)") from None
    for key in ("store", "container"):
        if key in raw and not _is_str(raw[key]):
            raise ConfigError(f"{here}: '{key}' must be a glob string")
    return Hold(index, reason.strip(), str(raw.get("store", "*")), str(raw.get("container", "*")), until)


def _parse_rule(raw: Any, index: int, where: str) -> Rule:
    here = f"{where}, rules[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{here}: a rule must be a mapping")
    unknown = [str(k) for k in raw if k not in RULE_KEYS]
    if unknown:
        raise ConfigError(f"{here}: unknown key {', '.join(map(repr, unknown))}; known keys: {', '.join(RULE_KEYS)}")
    action = raw.get("action")
    if action not in RULE_ACTIONS:
        shown = repr(action) if isinstance(action, str) else "missing" if action is None else "not a name"
        raise ConfigError(f"{here}: action is {shown}; actions: {', '.join(RULE_ACTIONS)}")
    globs = {}
    for key in ("store", "container"):
        value = raw.get(key, "*")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{here}: '{key}' must be a non-empty name or glob")
        globs[key] = value
    texts = {}
    for key in ("reason", "legal_basis"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ConfigError(f"{here}: '{key}' must be a non-empty text")
        texts[key] = value.strip() if value else None
    if action == RETAIN:
        missing = [k for k in ("reason", "legal_basis") if not texts[k]]
        if missing:
            raise ConfigError(f"{here}: action retain needs {' and '.join(missing)} (an exemption must say why)")
    until = _parse_until(raw.get("until"), here)
    field_ops = _parse_anonymise(raw.get("anonymise"), here)
    if action == ANONYMISE and not field_ops:
        raise ConfigError(f"{here}: action anonymise needs 'anonymise:', a mapping of column to operator")
    if field_ops and action not in (ANONYMISE, RETAIN):
        raise ConfigError(f"{here}: 'anonymise:' applies only to actions anonymise and retain, not {action}")
    match = raw.get("match", list(MATCH_ORDER))
    if isinstance(match, str):
        match = [match]
    if not isinstance(match, list) or not match or any(m not in MATCH_ORDER for m in match):
        raise ConfigError(f"{here}: 'match' must list match kinds from: {', '.join(MATCH_ORDER)}")
    override = raw.get("override_retained")
    if override is not None:
        if not (isinstance(override, str) and override.strip()):
            raise ConfigError(f"{here}: 'override_retained' must be a non-empty text: why this rule erases what "
                              f"stores.yaml declares retained")
        if action not in ERASING_ACTIONS:
            raise ConfigError(f"{here}: 'override_retained' goes with actions {', '.join(ERASING_ACTIONS)}, "
                              f"not {action}")
    return Rule(index=index, action=action, store=globs["store"], container=globs["container"],
                reason=texts["reason"] or "", legal_basis=texts["legal_basis"], until=until,
                field_ops=field_ops, match=tuple(m for m in MATCH_ORDER if m in match),
                override_retained=override.strip() if override else None)


def _parse_until(value: Any, here: str) -> _dt.date | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{here}: 'until' must be a date written YYYY-MM-DD")


def _parse_anonymise(value: Any, here: str) -> dict[str, OperatorSpec]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{here}: 'anonymise' must be a mapping of column to operator")
    ops: dict[str, OperatorSpec] = {}
    seen: dict[str, str] = {}
    for col, spec in value.items():
        col = str(col)
        if col.casefold() in seen:
            raise ConfigError(f"{here}: anonymise names column {col!r} twice (column names ignore case)")
        seen[col.casefold()] = col
        ops[col] = OperatorSpec.from_dict(spec, f"{here}, anonymise column {col!r}")
    return ops
