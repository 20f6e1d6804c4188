"""Discovery sweeps (pii.engine.sweep) on small real stores of all four kinds: SQLite and PostgreSQL, a CSV
folder, a pyftpdlib FTP drop and the fake Gmail endpoint. What is classified, what an incremental sweep
skips and what makes it sample a container again, sample sizes, and that no sampled value reaches the
results, the inventory or the CLI's output."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from connectors.fakes.ftp_server import PASSWORD, PASSWORD_ENV, FtpServer
from connectors.fakes.gmail_server import FakeGmail, mail
from pii.core.config import load_config
from pii.core.errors import ConfigError
from pii.state.inventory import Inventory
from pii.engine.sweep import sample_size, sweep_store

# values planted in the stores: none may appear in a result, the inventory or the CLI's output
SECRETS = ("zelda.quist@example.org", "Zelda Quist", "07700 900461", "7700900461", "ronan.vale@example.org",
           "Ronan Vale", "Flat 3, 12 Harbour Road")
MODEL = {"model": "none"}  # pattern recognizers only: fast; one test below runs the spaCy model


def write_config(tmp_path: Path, stores: dict, **top) -> Path:
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"ledger": "sqlite:///state.db", "detection": MODEL, **top, "stores": stores}))
    return path


def no_secrets(*things) -> None:
    text = json.dumps(things, default=str).lower()
    for s in SECRETS:
        assert s.lower() not in text, f"a sampled value leaked: {s!r}"


def inventory_of(config, store: str) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in Inventory(config.state_url).rows(store):
        out.setdefault(r["container"], {})[r["column_name"]] = {**r, "entities": json.loads(r["entities"])}
    return out


# --------------------------------------------------------------------------- SQL
def make_crm(url: str, customers: int = 40) -> sa.Engine:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("email", sa.String(100)),
             sa.Column("full_name", sa.String(100)), sa.Column("phone", sa.String(40)),
             sa.Column("notes", sa.Text))
    sa.Table("orders", md, sa.Column("order_id", sa.Integer, primary_key=True),
             sa.Column("customer_id", sa.Integer), sa.Column("amount", sa.Numeric(10, 2)))
    sa.Table("tags", md, sa.Column("code", sa.String(20), primary_key=True), sa.Column("label", sa.String(50)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(md.tables["customers"].insert(), [
            {"id": i, "email": f"c{i}@example.com" if i != 7 else SECRETS[0],
             "full_name": f"Customer {i}" if i != 7 else SECRETS[1], "phone": f"07700 9001{i:02d}",
             "notes": f"Called about order {i}; wants the invoice re-sent to c{i}@example.com by post"}
            for i in range(1, customers + 1)])
        conn.execute(md.tables["orders"].insert(), [{"order_id": i, "customer_id": i % customers + 1,
                                                      "amount": i * 3} for i in range(1, 61)])
        conn.execute(md.tables["tags"].insert(), [{"code": f"T{i}", "label": f"tag {i}"} for i in range(5)])
    return engine


@pytest.fixture
def sql_world(tmp_path):
    db = tmp_path / "crm.db"
    make_crm(f"sqlite:///{db}").dispose()
    path = write_config(tmp_path, {"crm": {"kind": "sql", "url": "sqlite:///crm.db"}})
    return load_config(path), db


def test_when_sqlite_store_is_swept_then_every_table_is_classified_and_only_counts_are_returned(sql_world):
    config, _db = sql_world
    said: list[str] = []
    result = sweep_store(config, "crm", progress=lambda _s, m: said.append(m))
    assert result["tables"] == result["containers"] == result["swept"] == 3 and result["unchanged"] == 0
    assert result["rows_sampled"] == 30 + 0 + 5  # min(sample 30, rows) per table with text columns (orders: none)
    assert result["rows_per_s"] > 0 and result["sample_rows"] == 30
    inv = inventory_of(config, "crm")
    assert set(inv) == {"customers", "orders", "tags"}
    assert inv["customers"]["email"]["kind"] == "email" and inv["customers"]["email"]["entities"] == ["EMAIL_ADDRESS"]
    assert inv["customers"]["phone"]["kind"] == "phone"
    assert inv["customers"]["notes"]["kind"] == "free_text"
    assert inv["orders"]["amount"]["kind"] == "other"
    assert result["columns"] == sum(len(c) for c in inv.values()) == 5 + 3 + 2
    assert result["by_kind"]["email"] == 1
    no_secrets(result, said, Inventory(config.state_url).rows(), Inventory(config.state_url).sweeps())


def test_when_postgresql_store_is_swept_then_its_tables_are_classified(postgres_url, tmp_path):
    make_crm(postgres_url).dispose()
    config = load_config(write_config(tmp_path, {"pg": {"kind": "sql", "url": postgres_url}}))
    first = sweep_store(config, "pg")
    assert first["swept"] == 3 and inventory_of(config, "pg")["customers"]["email"]["kind"] == "email"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders (order_id, customer_id, amount) VALUES (61, 1, 5)"))
    engine.dispose()
    second = sweep_store(config, "pg")
    assert (second["swept"], second["unchanged"]) == (1, 2)


@pytest.mark.parametrize("change, swept_again", [
    ("nothing", set()),
    ("insert a row", {"orders"}),
    ("delete the newest row", {"orders"}),
    ("add a column", {"tags"}),
    ("create a table", {"audit"}),
])
def test_when_sql_store_changes_then_incremental_sweep_samples_only_changed_tables(sql_world, change, swept_again):
    config, db = sql_world
    sweep_store(config, "crm")
    con = sqlite3.connect(db)
    con.executescript({
        "nothing": "",
        "insert a row": "INSERT INTO orders VALUES (61, 1, 5);",
        "delete the newest row": "DELETE FROM orders WHERE order_id = 60;",
        "add a column": "ALTER TABLE tags ADD COLUMN owner_email TEXT;",
        "create a table": "CREATE TABLE audit (id INTEGER PRIMARY KEY, actor_email TEXT);"
                          "INSERT INTO audit VALUES (1, 'ops@example.com');",
    }[change])
    con.commit()
    con.close()
    said: list[str] = []
    result = sweep_store(config, "crm", progress=lambda _s, m: said.append(m))
    assert result["swept"] == len(swept_again)
    assert result["unchanged"] == result["containers"] - len(swept_again)
    classified = {m.split(":")[0] for m in said if "columns classified" in m}
    assert classified == swept_again
    if change == "add a column":
        assert inventory_of(config, "crm")["tags"]["owner_email"]["kind"] == "email"


def test_when_full_is_set_then_unchanged_tables_are_sampled_again(sql_world):
    config, _db = sql_world
    sweep_store(config, "crm")
    assert sweep_store(config, "crm")["swept"] == 0
    again = sweep_store(config, "crm", full=True)
    assert (again["swept"], again["unchanged"], again["full"]) == (3, 0, True)


def test_when_a_table_is_dropped_then_the_inventory_forgets_it(sql_world):
    config, db = sql_world
    sweep_store(config, "crm")
    con = sqlite3.connect(db)
    con.execute("DROP TABLE tags")
    con.commit()
    con.close()
    result = sweep_store(config, "crm")
    assert result["removed"] == 1 and set(inventory_of(config, "crm")) == {"customers", "orders"}
    assert {s["container"] for s in Inventory(config.state_url).sweeps("crm")} == {"customers", "orders"}


def test_when_inventory_rows_were_lost_then_the_table_is_sampled_again(sql_world):
    config, _db = sql_world
    sweep_store(config, "crm")
    inv = Inventory(config.state_url)
    inv.put("crm", "orders", "x", {})  # e.g. cleared by hand
    assert sweep_store(config, "crm")["swept"] == 1


# --------------------------------------------------------------------------- sample sizes
@pytest.mark.parametrize("argument, store_option, detection, expected", [
    (None, None, None, 30),   # the SQL connector's default
    (None, None, 7, 7),       # detection: sample_rows
    (None, 12, 7, 12),        # the store's sample_size is more specific
    (3, 12, 7, 3),            # an explicit argument (--sample-rows) wins
])
def test_when_sample_size_is_configured_then_sweep_samples_that_many_rows(tmp_path, argument, store_option,
                                                                          detection, expected):
    make_crm(f"sqlite:///{tmp_path / 'crm.db'}").dispose()
    store = {"kind": "sql", "url": "sqlite:///crm.db"}
    if store_option is not None:
        store["sample_size"] = store_option
    config = load_config(write_config(tmp_path, {"crm": store},
                                      detection={**MODEL, **({"sample_rows": detection} if detection else {})}))
    result = sweep_store(config, "crm", sample_rows=argument)
    assert result["sample_rows"] == expected
    assert result["rows_sampled"] == min(expected, 40) + min(expected, 5)  # orders holds no text
    assert inventory_of(config, "crm")["customers"]["email"]["sample_size"] == min(expected, 40)


def test_when_sample_size_changes_then_tables_are_sampled_again(sql_world):
    config, _db = sql_world
    sweep_store(config, "crm", sample_rows=10)
    assert sweep_store(config, "crm", sample_rows=10)["swept"] == 0
    assert sweep_store(config, "crm", sample_rows=20)["swept"] == 3


@pytest.mark.parametrize("bad", [0, -1, "ten", 10**9, True])
def test_when_sample_size_is_not_a_positive_number_then_config_error(sql_world, bad):
    config, _db = sql_world
    with pytest.raises(ConfigError, match="sample_rows"):
        sample_size(config, config.stores["crm"], bad)


# --------------------------------------------------------------------------- CSV
@pytest.fixture
def csv_world(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "leads.csv").write_text("email,name,phone\n" + "".join(
        f"lead{i}@example.com,Lead Person {i},07700 9002{i:02d}\n" for i in range(30))
        + f"{SECRETS[0]},{SECRETS[1]},{SECRETS[2]}\n", encoding="utf-8")
    (folder / "stock.csv").write_text("sku;qty\n" + "".join(f"S{i};{i}\n" for i in range(10)), encoding="utf-8")
    config = load_config(write_config(tmp_path, {"exports": {"kind": "csv", "path": "exports"}}))
    return config, folder


def test_when_csv_folder_is_swept_then_files_are_classified_and_unchanged_files_skipped(csv_world):
    config, folder = csv_world
    first = sweep_store(config, "exports", sample_rows=20)
    assert (first["files"], first["swept"], first["rows_sampled"]) == (2, 2, 20 + 10)
    inv = inventory_of(config, "exports")
    assert inv["leads.csv"]["email"]["kind"] == "email" and inv["stock.csv"]["qty"]["kind"] == "other"
    second = sweep_store(config, "exports", sample_rows=20)
    assert (second["swept"], second["unchanged"], second["rows_sampled"]) == (0, 2, 0)
    with open(folder / "stock.csv", "a", encoding="utf-8") as fh:
        fh.write("S99;4\n")
    third = sweep_store(config, "exports", sample_rows=20)
    assert (third["swept"], third["unchanged"]) == (1, 1)
    (folder / "leads.csv").unlink()
    fourth = sweep_store(config, "exports", sample_rows=20)
    assert (fourth["files"], fourth["removed"]) == (1, 1) and set(inventory_of(config, "exports")) == {"stock.csv"}
    no_secrets(first, second, third, fourth, Inventory(config.state_url).rows())


def test_when_a_file_is_touched_with_same_size_then_it_is_sampled_again(csv_world):
    config, folder = csv_world
    sweep_store(config, "exports")
    st = (folder / "stock.csv").stat()
    os.utime(folder / "stock.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert sweep_store(config, "exports")["swept"] == 1


def test_when_a_file_cannot_be_read_then_it_is_reported_and_the_rest_is_swept(csv_world):
    config, folder = csv_world
    (folder / "broken.csv").write_bytes(b"email,name\n\x81\x8d\x8f,x\n")  # neither UTF-8 nor cp1252
    result = sweep_store(config, "exports")
    assert result["failed"] == 1 and result["errors"][0]["container"] == "broken.csv"
    assert "UTF-8" in result["errors"][0]["reason"]
    assert result["swept"] == 2
    assert sweep_store(config, "exports")["failed"] == 1  # not recorded as swept: tried again next time


# --------------------------------------------------------------------------- FTP
LEADS = ("email;name;phone;notes\n" + "".join(
    f"p{i}@example.com;Person {i};07700 9003{i:02d};called back\n" for i in range(12))
    + f"{SECRETS[0]};{SECRETS[1]};{SECRETS[2]};{SECRETS[6]}\n").encode()
EVENTS = b"".join(json.dumps({"email": f"e{i}@example.com", "event": "signup", "n": i,
                              "contact": {"first_name": "Ann", "city": "Leeds"}}).encode() + b"\n"
                  for i in range(8)) + b"not json, written to ronan.vale@example.org\n"
NOTES = (b"call log\n\n" + b"".join(f"rang {SECRETS[4]} about order {i}\n".encode() for i in range(5)))


@pytest.fixture
def ftp_world(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with FtpServer(tmp_path / "home") as srv:
        srv.put("/incoming/leads.csv", LEADS)
        srv.put("/incoming/sub/events.jsonl", EVENTS)
        srv.put("/incoming/notes.txt", NOTES)
        srv.put("/incoming/scan.pdf", b"%PDF-1.4 not read")
        config = load_config(write_config(tmp_path, {"drop": {"kind": "ftp", **srv.store_options(path="/incoming")}}))
        yield config, srv


def test_when_ftp_drop_is_swept_then_csv_jsonl_and_txt_files_are_classified(ftp_world):
    config, _srv = ftp_world
    said: list[str] = []
    result = sweep_store(config, "drop", progress=lambda _s, m: said.append(m))
    assert (result["files"], result["swept"]) == (3, 3)  # the PDF is not a container
    assert result["rows_sampled"] == 13 + 9 + 6
    inv = inventory_of(config, "drop")
    assert set(inv) == {"/incoming/leads.csv", "/incoming/sub/events.jsonl", "/incoming/notes.txt"}
    assert inv["/incoming/leads.csv"]["email"]["kind"] == "email"
    assert inv["/incoming/leads.csv"]["phone"]["kind"] == "phone"
    events = inv["/incoming/sub/events.jsonl"]
    assert set(events) == {"email", "event", "n", "contact", "line"}  # top-level keys; a non-JSON line
    assert events["email"]["kind"] == "email" and events["n"]["kind"] == "other"
    assert events["line"]["kind"] == "free_text" and "EMAIL_ADDRESS" in events["line"]["entities"]
    notes = inv["/incoming/notes.txt"]
    assert set(notes) == {"line"} and notes["line"]["kind"] == "free_text"
    assert notes["line"]["entities"] == ["EMAIL_ADDRESS"] and notes["line"]["sample_size"] == 6
    assert any("cannot read" in m for m in said)
    no_secrets(result, said, Inventory(config.state_url).rows())


def test_when_ftp_file_changes_then_only_it_is_swept_again(ftp_world):
    config, srv = ftp_world
    sweep_store(config, "drop")
    again = sweep_store(config, "drop")
    assert (again["swept"], again["unchanged"]) == (0, 3)
    srv.put("/incoming/notes.txt", NOTES + b"one more line\n")
    third = sweep_store(config, "drop")
    assert (third["swept"], third["unchanged"]) == (1, 2)
    assert inventory_of(config, "drop")["/incoming/notes.txt"]["line"]["sample_size"] == 7


def test_when_ftp_sample_is_smaller_than_a_file_then_only_its_first_records_are_read(ftp_world):
    config, _srv = ftp_world
    result = sweep_store(config, "drop", sample_rows=4)
    assert result["rows_sampled"] == 4 * 3
    assert inventory_of(config, "drop")["/incoming/leads.csv"]["email"]["sample_size"] == 4


# --------------------------------------------------------------------------- Gmail
CLIENTS = ("Maria Lopez", "John Carter", "Priya Shah", "Tom Baker", "Helen Ward", "Oliver Grant")


@pytest.fixture
def gmail_world(tmp_path):
    """Seven messages (the newest: the planted person's); classified with the spaCy model (PERSON and
    PHONE_NUMBER need it)."""
    with FakeGmail() as gmail:
        for i, name in enumerate(CLIENTS):
            gmail.add(mail(frm=f'"{name}" <client{i}@example.com>', to="support@example.test",
                           subject=f"Order {i} question", text=f"Please call me on 07700 9004{i:02d}. Thanks"))
        gmail.add(mail(frm=f'"{SECRETS[5]}" <{SECRETS[4]}>', to="support@example.test", cc="billing@example.test",
                       subject="Refund", text=f"My address is {SECRETS[6]}, phone {SECRETS[2]}"))
        config = load_config(write_config(tmp_path, {"mailbox": {
            "kind": "gmail", "user_id": "support@example.test", "api_endpoint": gmail.endpoint}}, detection={}))
        yield config, gmail


def test_when_mailbox_is_swept_then_headers_are_email_columns_and_texts_carry_entities(gmail_world):
    config, gmail = gmail_world
    said: list[str] = []
    result = sweep_store(config, "mailbox", progress=lambda _s, m: said.append(m))
    assert (result["mailboxes"], result["containers"], result["swept"], result["rows_sampled"]) == (1, 1, 1, 7)
    inv = inventory_of(config, "mailbox")["messages"]
    assert set(inv) == {"from", "to", "cc", "subject", "body"}
    assert inv["from"]["kind"] == inv["to"]["kind"] == inv["cc"]["kind"] == "email"
    assert inv["from"]["entities"] == ["EMAIL_ADDRESS", "PERSON"] and inv["from"]["confidence"] == 1.0
    assert inv["to"]["entities"] == ["EMAIL_ADDRESS"]  # bare addresses: no display names
    assert inv["cc"]["sample_size"] == 1 and inv["from"]["sample_size"] == 7
    assert inv["body"]["kind"] == inv["subject"]["kind"] == "free_text"
    assert "PHONE_NUMBER" in inv["body"]["entities"]
    no_secrets(result, said, Inventory(config.state_url).rows())


def test_when_mailbox_is_unchanged_then_it_is_skipped_and_new_mail_makes_it_swept_again(gmail_world):
    config, gmail = gmail_world
    sweep_store(config, "mailbox", sample_rows=3)
    fetched = gmail.stats["get_raw"]
    assert fetched == 3  # the newest 3 only
    again = sweep_store(config, "mailbox", sample_rows=3)
    assert (again["swept"], again["unchanged"]) == (0, 1) and gmail.stats["get_raw"] == fetched
    gmail.add(mail(frm="new@example.com", to="support@example.test", subject="Hello", text="hi"))
    third = sweep_store(config, "mailbox", sample_rows=3)
    assert third["swept"] == 1 and gmail.stats["get_raw"] == fetched + 3


# --------------------------------------------------------------------------- CLI
def test_when_lethe_sweep_runs_then_it_prints_a_line_per_store_and_an_incremental_rerun_skips(sql_world, csv_world,
                                                                                             tmp_path, capsys):
    from pii.cli.main import main

    path = write_config(tmp_path, {"crm": {"kind": "sql", "url": "sqlite:///crm.db"},
                                   "exports": {"kind": "csv", "path": "exports"}})
    assert main(["--config", str(path), "sweep", "--sample-rows", "10"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("crm (sql): 3 containers: 3 swept, 0 unchanged")
    assert all("rows/s" in line for line in lines)
    assert "[crm]" in err and "[exports]" in err  # progress on stderr
    assert main(["--config", str(path), "sweep", "--sample-rows", "10", "--store", "exports"]) == 0
    out, _err = capsys.readouterr()
    assert out.startswith("exports (csv): 2 containers: 0 swept, 2 unchanged")
    assert main(["--config", str(path), "-q", "sweep", "--sample-rows", "10", "--full"]) == 0
    out, err = capsys.readouterr()
    assert "3 swept" in out and "2 swept" in out and err == ""
    no_secrets(out, err)
    assert main(["--config", str(path), "sweep", "--store", "nope"]) == 2
