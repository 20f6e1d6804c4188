"""The trigger forms of Lethe's DAGs: Airflow Params with JSON schemas, validated before a run starts
(a bad email in a run conf is refused with ParamValidationError; the REST trigger answers 400).

Fields follow CONTRACT.md ("Airflow"): either the identifiers (``emails``, ``names``, ``phones``,
``ids``) or only the ``request_id`` of a request registered beforehand, so that the identifiers never
enter Airflow's metadata.
"""
from __future__ import annotations

from airflow.sdk import Param

from pii.core.subject import EMAIL_FULL_RE

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"  # the ledger's request ids


def email_pattern() -> str:
    """A JSON-schema ``pattern`` (Python ``re``, which the API server's jsonschema validates with) that
    accepts what the CLI accepts (`pii.core.subject.email_key`: surrounding spaces, ``<...>`` and
    ``mailto:`` trimmed, then `EMAIL_FULL_RE`, case-insensitive). So ``x@@y`` is refused when the run is
    triggered. What a pattern cannot check (an internationalised domain that is not valid IDNA) is
    refused by the run's first task, naming the field and position, never the value."""
    core = EMAIL_FULL_RE.pattern
    core = core[1:] if core.startswith("^") else core
    core = core[:-1] if core.endswith("$") else core
    return r"(?i)^\s*[<>]*\s*(?:mailto:)?(?:" + core + r")\s*[<>]*\s*$"


def email_item() -> dict:
    """The schema of one email address in a form (format for the UI, pattern for the rules)."""
    return {"type": "string", "minLength": 1, "format": "idn-email", "pattern": email_pattern()}


def optional(kind: str) -> list[str]:
    """A JSON-schema type that also allows null: Airflow's UI marks a field required unless its type
    allows null (and an empty optional field is sent as null)."""
    return ["null", kind]


def _strings(title: str, description: str, **item) -> Param:
    return Param([], type=optional("array"), items={"type": "string", "minLength": 1, **item}, uniqueItems=True,
                 title=title, description=description)


def subject_params(*, erasure: bool) -> dict[str, Param]:
    """Params of subject_access (erasure=False) and subject_erasure (erasure=True)."""
    params = {
        "emails": Param([], type=optional("array"), items=email_item(), uniqueItems=True, title="Email addresses",
                        description="The person's email addresses, one per line (checked as `lethe` checks "
                                    "them: a malformed address stops the run before it starts)."),
        "names": _strings("Names", "Full names (\"First Last\" or \"Last, First\"). A name alone is weak "
                                   "evidence: such findings are reported, never erased without review."),
        "phones": _strings("Phone numbers", "Any format; national numbers are read in the config's "
                                            "default region."),
        "ids": Param({}, type=optional("object"), title="Other identifiers",
                     description='Column or field name -> value, e.g. {"customer_no": "C-10042"}.',
                     additionalProperties={"anyOf": [{"type": "string", "minLength": 1},
                                                     {"type": "array", "items": {"type": "string"}}]}),
        "request_id": Param(None, type=["null", "string"], pattern=REQUEST_ID_PATTERN, title="Request id",
                            description="Alone: run a request registered beforehand (its identifiers stay "
                                        "in Lethe's encrypted request store). With identifiers: the id to "
                                        "register them under (default: derived from the run)."),
        "received_at": Param(None, type=["null", "string"], format="date", title="Received on",
                             description="When the request was received (the answer is due one month "
                                         "later); default today."),
        "requester": Param(None, type=["null", "string"], maxLength=200, title="Requester",
                           description="Who asked (kept in the ledger only as a keyed hash); default the "
                                       "user who triggered the run."),
        "identity_verification": Param(None, type=["null", "string"], maxLength=500,
                                       title="Identity verification",
                                       description="How the requester's identity was checked (a note for "
                                                   "the answer; no document numbers)."),
        "stores": Param([], type=optional("array"), items={"type": "string"}, title="Stores",
                        description="Only these stores (default: every store in the config)."),
        "config": Param(None, type=["null", "string"], title="Config path",
                        description="Another stores.yaml; honoured only when the workers set "
                                    "LETHE_ALLOW_CONFIG_OVERRIDE=1 (default: LETHE_CONFIG)."),
    }
    if not erasure:
        params["portable"] = Param(False, type=optional("boolean"), title="Portable copy",
                                   description="Also write portable.zip: the data the person provided (their own "
                                               "and linked records, not mentions in other people's records) as "
                                               "JSON and CSV with a JSON Schema per table or file (GDPR Art. 20).")
    if erasure:
        params["include_weak"] = Param(False, type=optional("boolean"), title="Include weak findings",
                                       description="Also erase name-only findings: only after a person "
                                                   "reviewed them.")
        params["require_distinct_approver"] = Param(False, type=optional("boolean"), title="Second person approves",
                                                    description="Refuse an approval by the requester.")
    return params


def store_params() -> dict[str, Param]:
    """Params of the scheduled flows (sweep, due dates): which stores and which config."""
    return {
        "stores": Param([], type=optional("array"), items={"type": "string"}, title="Stores",
                        description="Only these stores (default: every store in the config)."),
        "config": Param(None, type=["null", "string"], title="Config path",
                        description="Honoured only with LETHE_ALLOW_CONFIG_OVERRIDE=1 (default: LETHE_CONFIG)."),
    }


def sweep_params() -> dict[str, Param]:
    """discovery_sweep's form: the stores, a full sweep, the sample size, the reports folder."""
    return {
        **store_params(),
        "full": Param(False, type=optional("boolean"), title="Full sweep",
                      description="Sample every table and file again, changed or not (default: only those "
                                  "changed since the last sweep)."),
        "sample_rows": Param(None, type=["null", "integer"], minimum=1, maximum=100000, title="Sample rows",
                             description="Rows, records or messages sampled per table or file (default: the "
                                         "store's sample_size, detection: sample_rows, else the connector's)."),
        "reports_dir": Param(None, type=["null", "string"], title="Reports folder",
                             description="Where the data map, records of processing and inventory export go "
                                         "(default: LETHE_REPORTS_DIR, else reports/ beside stores.yaml); honoured "
                                         "only with LETHE_ALLOW_CONFIG_OVERRIDE=1."),
    }


def due_params() -> dict[str, Param]:
    """requests_due's form: the stores, and how many days ahead a request counts as due soon."""
    return {**store_params(), "within_days": Param(7, type=optional("integer"), minimum=0, maximum=31,
                                                   title="Warn this many days ahead")}
