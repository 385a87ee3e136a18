"""Every example runs as its docstring says: `durable-sync run FILE --input ... --skip-time --db :memory:`.

Each run goes through ``durable_sync.cli.main`` exactly as the command line does, and must exit 0
with the expected result on the last line of stdout (the path the example is meant to take).
"""
from __future__ import annotations

import json
import os
import re

import pytest

from durable_sync import cli

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

ORDER = {"order_id": "o-1", "items": [{"sku": "apple", "qty": 3}]}
RECORDS = {"records": [{"id": 1, "email": "ada@example.com"}, {"id": 2, "email": "alan@example.org"},
                       {"id": 3, "email": "not-an-email"}, {"id": 4, "email": "grace@example.net"}]}


def run_example(capsys, name: str, event, *extra: str) -> tuple[int, object, str]:
    """Run examples/<name> with the CLI; (exit code, decoded last stdout line, stderr)."""
    argv = ["run", os.path.join(EXAMPLES, name), "--input", json.dumps(event), "--skip-time", "--db", ":memory:",
            *extra]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines, f"no result on stdout; stderr:\n{err}"
    return code, json.loads(lines[-1]), err


def check_order(result, err):
    assert result == {"order_id": "o-1", "reservation": "res-o-1",
                      "receipt": {"auth": "auth-o-1", "amount": 1.5}, "status": "charged"}
    assert "retry in 1 s" in err  # the flaky reservation was retried durably
    assert "cool-down" in err


def check_approval_expired(result, err):
    assert result == {"expense_id": "e-1", "amount": 420, "status": "expired"}  # nobody answered in 24 h
    assert "callback id" in err


def check_approval_by_policy(result, err):
    assert result["status"] == "paid" and result["approved_by"] == "policy"


def check_fanout(result, err):
    assert [r["id"] for r in result["enriched"]] == [1, 2, 4]
    assert all(r["score"] > 0 for r in result["enriched"])
    assert [f["id"] for f in result["failed"]] == [3]
    assert "not an email address" in result["failed"][0]["error"]


def check_poll(result, err):
    assert result["status"] == "SUCCEEDED" and result["polls"] == 3
    assert result["location"] == "s3://results/job-sales-2025.csv"


def check_invoke_charged(result, err):
    assert result["status"] == "charged" and result["receipt"] == "charge-c-42-120"
    assert "ChainedInvokeSucceeded" in err and "fraud-check" in err


def check_invoke_rejected(result, err):
    assert result["status"] == "rejected"
    assert result["reason"].startswith("PermissionError: amount 25000 is above")
    assert "ChainedInvokeFailed" in err


def check_concurrent(result, err):
    assert result["summary"] == "Customer 42: 3 orders, 66 total, risk 54"
    assert result["risk"] == {"score": 54, "flagged": False}
    assert "retry in 2 s" in err  # the busy orders service was retried durably


def check_official_paid(result, err):
    assert result == {"order_id": "o-1", "status": "paid", "approved_by": "auto", "charged": 40, "attempts": 2}
    assert "retry in 30 s" in err  # the official SDK's retry strategy, in virtual time


def check_official_expired(result, err):
    assert result == {"order_id": "o-2", "status": "expired"}  # nobody answered in 24 h
    assert "CallbackTimedOut" in err


def check_traced(result, err):
    assert result == {"report": "weekly", "rows": 3, "total": 1000}
    assert "retry in 1 s" in err  # the eu source failed once: two invocations, one trace


CASES = [
    ("order_workflow.py", ORDER, check_order),
    ("human_approval.py", {"expense_id": "e-1", "amount": 420}, check_approval_expired),
    ("human_approval.py", {"expense_id": "e-2", "amount": 40}, check_approval_by_policy),
    ("fanout_enrichment.py", RECORDS, check_fanout),
    ("poll_job.py", {"dataset": "sales-2025"}, check_poll),
    ("invoke_workflow.py", {"customer": "c-42", "amount": 120}, check_invoke_charged),
    ("invoke_workflow.py", {"customer": "c-42", "amount": 25000}, check_invoke_rejected),
    ("concurrent_enrichment.py", {"user_id": 42}, check_concurrent),
    ("official_sdk_approval.py", {"order_id": "o-1", "amount": 40}, check_official_paid),
    ("official_sdk_approval.py", {"order_id": "o-2", "amount": 250}, check_official_expired),
    ("traced_report.py", {"report": "weekly", "regions": ["eu", "us", "ap"]}, check_traced),
]


@pytest.mark.parametrize("name,event,check", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_example_runs_with_the_cli(capsys, name, event, check):
    code, result, err = run_example(capsys, name, event)
    assert code == cli.EXIT_OK, err
    assert "status SUCCEEDED" in err
    check(result, err)


def test_every_example_is_covered():
    files = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_"))
    assert set(files) == {c[0] for c in CASES}, "add the new example to CASES"


@pytest.mark.parametrize("name", sorted({c[0] for c in CASES}))
def test_each_example_documents_how_to_run_it(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        source = f.read()
    assert re.search(rf"durable-sync run examples/{re.escape(name)} ", source), \
        f"{name}: its docstring should show the `durable-sync run examples/{name} ...` command"


def test_the_invoke_target_is_its_own_execution_in_the_database(tmp_path, capsys):
    """With a database file, the caller and the target are two executions; the history shows both."""
    db = str(tmp_path / "durable.db")
    code = cli.main(["run", os.path.join(EXAMPLES, "invoke_workflow.py"), "--input",
                     json.dumps({"customer": "c-42", "amount": 120}), "--skip-time", "--db", db, "--name", "pay-1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert cli.main(["list", "--db", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["DurableExecutions"]  # ListDurableExecutionsByFunction's shape
    assert sorted(e["FunctionArn"].split(":")[6] for e in listed) == ["fraud-check", "invoke_workflow"]
    assert {e["Status"] for e in listed} == {"SUCCEEDED"}
    assert cli.main(["history", "pay-1", "--db", db]) == 0
    tree = capsys.readouterr().out
    assert "fraud-check" in tree and "validate" in tree and "charge" in tree


def test_functions_must_be_a_dict_of_callables(tmp_path, capsys):
    bad = tmp_path / "bad_functions.py"
    bad.write_text("import durable_sync as ds\n\n@ds.durable_handler\ndef handler(event, ctx):\n    return 1\n\n"
                   "FUNCTIONS = ['not', 'a', 'dict']\n")
    code = cli.main(["run", str(bad), "--skip-time", "--db", ":memory:"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "FUNCTIONS must be a dict of function name -> handler" in err


def test_an_unregistered_invoke_target_fails_with_a_hint(tmp_path, capsys):
    src = tmp_path / "lonely.py"
    src.write_text("import durable_sync as ds\n\n@ds.durable_handler\ndef handler(event, ctx):\n"
                   "    return ctx.invoke('nowhere', {})\n")
    code = cli.main(["run", str(src), "--skip-time", "--db", ":memory:"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert "'nowhere' is not registered with the local engine" in err


ROOT = os.path.dirname(EXAMPLES)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_in_the_readme_and_guides_resolve():
    docs = [os.path.join(ROOT, "README.md")] + [
        os.path.join(ROOT, "docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs"))) if f.endswith(".md")]
    broken = []
    for doc in docs:
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # external URLs are not checked
            path, _, fragment = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if not os.path.exists(full):
                broken.append(f"{os.path.relpath(doc, ROOT)}: {target} (no such file)")
                continue
            if fragment and full.endswith(".md"):
                with open(full, encoding="utf-8") as f:
                    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", f.read(), flags=re.M)}
                if fragment not in anchors:
                    broken.append(f"{os.path.relpath(doc, ROOT)}: {target} (no heading #{fragment})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_keeps_its_two_setup_commands_first():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "durable-sync run examples/order_workflow.py" in first_block and "python3 -m pytest -q" in first_block
    assert text.index("```bash") < text.index("## ")
