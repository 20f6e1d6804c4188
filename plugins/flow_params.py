"""Trigger forms of the special-flow DAGs (Airflow Params, validated before a run starts)."""
from __future__ import annotations

from airflow.sdk import Param

from plugins.params import REQUEST_ID_PATTERN, email_item, email_pattern, optional, store_params  # noqa: F401


def _common() -> dict[str, Param]:
    params = store_params()
    params.pop("stores")
    params["requester"] = Param(None, type=["null", "string"], maxLength=200, title="Requester",
                                description="Who asked (kept as a keyed hash); default the triggering user.")
    params["require_distinct_approver"] = Param(False, type=optional("boolean"), title="Second person approves",
                                                description="Refuse an approval by the requester.")
    return params


def run_date_param() -> Param:
    return Param(None, type=["null", "string"], format="date", title="Run date",
                 description="Ages and retention periods are computed on this day (default today).")


def received_in_error_params() -> dict[str, Param]:
    s = lambda title, desc, **kw: Param(None, type=["null", "string"], title=title, description=desc, **kw)  # noqa: E731
    return {
        "store": Param("", type="string", minLength=1, title="Store", description="The store the source is in."),
        "file": s("File", "csv/ftp store: the export file or drop path (glob allowed)."),
        "sender": s("Sender", "mail store: every message from this address.", format="idn-email",
                    pattern=email_pattern()),
        "message_id": s("Message id", "mail store: one message, by the store's id."),
        "batch_column": s("Import batch column", "sql store: the column naming the import batch."),
        "batch_value": s("Import batch value", "sql store: the batch received in error."),
        "table": s("Table", "sql store: only this table (default every table with the column)."),
        "emails": Param([], type=optional("array"), items=email_item(), title="Subject's emails",
                        description="Only what the source holds about this person (default: the whole source)."),
        "phones": Param([], type=optional("array"), items={"type": "string"}, title="Subject's phones"),
        **_common(),
    }


def child_purge_params() -> dict[str, Param]:
    return {
        "threshold": Param(None, type=["null", "integer"], minimum=1, maximum=21, title="Age threshold",
                           description="Under this age (default: child_purge.threshold in the config, 13)."),
        "run_date": run_date_param(),
        **_common(),
    }


def retention_params() -> dict[str, Param]:
    return {
        "rules": Param([], type=optional("array"), items={"type": "string"}, title="Rules",
                       description="Only these retention rules (default: the whole schedule)."),
        "run_date": run_date_param(),
        "dry_run": Param(False, type=optional("boolean"), title="Dry run only",
                         description="Write the report of what has expired; plan and change nothing."),
        **_common(),
    }


def accounts_params() -> dict[str, Param]:
    return {
        "rules": Param([], type=optional("array"), items={"type": "string"}, title="Account rules",
                       description="Only these account rules (default: every rule under accounts: in stores.yaml)."),
        "run_date": run_date_param(),
        "dry_run": Param(False, type=optional("boolean"), title="Review only",
                         description="Send notices and write the confirmation lists; plan no deletion."),
        **_common(),
    }


def unsubscribe_params() -> dict[str, Param]:
    return {
        "emails": Param([], type="array", items=email_item(), minItems=1,
                        title="Email addresses", description="The person withdrawing consent."),
        "phones": Param([], type=optional("array"), items={"type": "string"}, title="Phone numbers"),
        **_common(),
    }
