"""The console over HTTP, no browser: its pages and files, what its JSON says, its actions, and its refusals.

Every test runs a served engine (virtual time, callbacks in real time, as ``serve --skip-time``) with the
console mounted, and talks to it with http.client, setting Host / Origin / token headers by hand.
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from durable_sync.console.app import timeline_css
from durable_sync.console.views import PREVIEW_CHARS

MARKUP = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _q(value: str) -> str:
    return quote(value, safe="")


def _execution(served, arn: str, since: str | None = None) -> dict:
    path = f"/console/api/execution?arn={_q(arn)}" + (f"&since={_q(since)}" if since else "")
    status, _, body = served.request("GET", path)
    assert status == 200, body
    return body


def _state(served, arn: str) -> tuple:
    """What a refused action must leave as it was."""
    snap = served.engine.snapshot(arn)
    return snap.status, snap.execution.pause_status, len(snap.history), tuple(cb.callback_id for cb in snap.open_callbacks)


# -- pages and files --------------------------------------------------------------------------------------------
def test_the_pages_carry_the_servers_token_and_load_only_the_consoles_own_files(served):
    status, headers, page = served.request("GET", "/console/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert f'content="{served.console.token}"' in page
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert linked and all(link.startswith("static/") or link.startswith("data:") or link == "./" for link in linked)
    assert "<script>" not in page.replace('<script src=', '')  # no inline script: everything is a package file
    for link in (link for link in linked if link.startswith("static/")):
        status, headers, text = served.request("GET", "/console/" + link)
        assert status == 200 and text, link
    status, _, page = served.request("GET", "/console/execution?arn=x")
    assert status == 200 and served.console.token in page and "static/execution.js" in page


def test_the_execution_page_draws_with_the_html_timelines_own_stylesheet(served):
    status, headers, css = served.request("GET", "/console/static/timeline.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert css == timeline_css() and ".bar.ok" in css and ".row" in css


def test_console_without_a_slash_redirects_and_unknown_paths_say_where_the_console_is(served):
    status, headers, _ = served.request("GET", "/console")
    assert status == 308 and headers["location"] == "/console/"
    status, _, body = served.request("GET", "/console/nope")
    assert status == 404 and "/console/" in body["message"]
    status, _, body = served.request("GET", "/console/static/../../setup.py")
    assert status == 404


def test_everything_outside_the_console_stays_the_lambda_api_with_its_origin_rule(served):
    path = f"/2025-12-01/durable-executions/{_q('arn:aws:lambda:us-east-1:0:function:f/durable-execution/n/i')}"
    status, headers, body = served.request("GET", path, headers={"Origin": f"http://{served.host}"}, token=None)
    assert status == 403 and headers.get("x-amzn-errortype") and "Origin" in body["message"]
    status, headers, body = served.request("GET", path, token=None)
    assert status == 404 and headers["x-amzn-errortype"] == "ResourceNotFoundException"


# -- the executions list -----------------------------------------------------------------------------------------
def test_the_list_filters_by_function_status_and_name_and_shows_paused_ones_as_paused(served):
    waiting = served.start("approval", {"order": 1}, name="order-waiting")
    done = served.start("echo", {"x": 1}, name="order-done")
    paused = served.start("approval", {"order": 2}, name="other-paused")
    served.engine.pause(paused)

    def names(query: str) -> list[str]:
        status, _, body = served.request("GET", "/console/api/executions" + query)
        assert status == 200, body
        return [row["name"] for row in body["executions"]]

    status, _, body = served.request("GET", "/console/api/executions")
    rows = {row["name"]: row for row in body["executions"]}
    assert rows["order-waiting"]["status"] == "RUNNING" and rows["order-done"]["status"] == "SUCCEEDED"
    assert rows["other-paused"]["status"] == "PAUSED" and body["any_running"] is True
    assert rows["order-done"]["function"] == "echo" and rows["order-done"]["started"].endswith("UTC")
    assert rows["order-done"]["ended"] is True and rows["order-waiting"]["ended"] is False
    assert sorted(names("?function=approval")) == ["order-waiting", "other-paused"]
    assert names("?status=PAUSED") == ["other-paused"]
    assert names("?status=RUNNING") == ["order-waiting"]
    assert sorted(names("?name=ORDER")) == ["order-done", "order-waiting"]  # contains, any case
    assert names("?name=order&function=approval&status=RUNNING") == ["order-waiting"]
    assert {waiting, done, paused} == {row["arn"] for row in body["executions"]}
    status, _, body = served.request("GET", "/console/api/executions?status=DONE")
    assert status == 400 and "RUNNING" in body["message"]


def test_the_list_pages_newest_first_and_says_whether_more_follow(served):
    arns = []
    for i in range(60):
        arns.append(served.start("echo", i, name=f"e-{i:03d}"))
        served.engine.advance(1)  # (the virtual clock stands still otherwise: all would start at one instant)
    status, _, first = served.request("GET", "/console/api/executions?limit=25")
    assert [row["arn"] for row in first["executions"]] == arns[::-1][:25] and first["has_more"] is True
    status, _, last = served.request("GET", "/console/api/executions?limit=25&offset=50")
    assert [row["arn"] for row in last["executions"]] == arns[::-1][50:] and last["has_more"] is False
    assert last["any_running"] is False  # all ended: the page stops refreshing quickly
    status, _, body = served.request("GET", "/console/api/executions?limit=7")
    assert status == 400 and "25, 50, 100, 200" in body["message"]


# -- one execution -----------------------------------------------------------------------------------------------
def test_an_execution_shows_its_tree_attempts_tracebacks_timers_and_events(served):
    arn = served.start("flaky", {"card": "4242"}, name="flaky-1")
    page = _execution(served, arn)
    assert page["status"] == "FAILED" and page["terminal"] is True and page["function"] == "flaky"
    assert page["input"]["text"] == '{"card": "4242"}' and page["result"] is None
    assert page["error"]["type"] == "ValueError" and "declined" in page["error"]["message"]
    [charge] = page["operations"]
    assert charge["label"] == "charge" and charge["kind"] == "step" and charge["status"] == "FAILED"
    assert [a["outcome"] for a in charge["attempts"]] == ["FAILED", "FAILED", "FAILED"]
    trace = charge["attempts"][0]["error"]["trace"]
    user_text = "\n".join(part["text"] for part in trace if not part["library"])
    assert "_explode" in user_text and "ValueError: card declined <b>twice</b>" in user_text
    assert charge["attempts"][0]["retry_delay"] and charge["bars"] and charge["bars"][0]["kind"] == "failed"
    events = {event["id"]: event for event in page["events"]}
    assert [events[i]["type"] for i in charge["events"]] == ["StepStarted", "StepFailed", "StepStarted", "StepFailed",
                                                             "StepStarted", "StepFailed"]
    assert page["can"] == {"stop": False, "pause": False, "resume": False, "delete": True, "run_again": True}

    sleeping = served.start_only("sleeper", name="sleeper-1")
    page = _execution(served, sleeping)
    wait = next(op for op in page["operations"] if op["label"] == "a-day")
    assert wait["status"] == "STARTED" and [t["kind"] for t in wait["timers"]] == ["wait"]
    assert wait["timers"][0]["in"] == "24 h" and page["can"]["stop"] and page["can"]["pause"]


def test_an_unchanged_execution_answers_only_its_version(served):
    arn = served.start("approval", {"order": 7}, name="v")
    page = _execution(served, arn)
    assert _execution(served, arn, since=page["version"]) == {"version": page["version"], "unchanged": True}
    [callback] = page["open_callbacks"]
    served.engine.send_callback_success(callback["callback_id"], '"ok"')
    again = _execution(served, arn, since=page["version"])
    assert again.get("unchanged") is None and again["status"] == "SUCCEEDED" and again["open_callbacks"] == []


def test_long_payloads_are_clipped_and_whole_on_request(served):
    big = {"blob": "x" * (PREVIEW_CHARS * 2)}
    arn = served.start("echo", big, name="big")
    page = _execution(served, arn)
    assert page["result"]["truncated"] and len(page["result"]["text"]) == PREVIEW_CHARS
    assert page["result"]["size"] == len(json.dumps(big))
    for ref in ("result", page["operations"][0]["result"]["ref"], "input"):
        status, _, whole = served.request("GET", f"/console/api/payload?arn={_q(arn)}&ref={_q(ref)}")
        assert status == 200 and json.loads(whole["text"]) == big, ref
    event_ref = f"event:{page['events'][-1]['id']}"
    status, _, whole = served.request("GET", f"/console/api/payload?arn={_q(arn)}&ref={_q(event_ref)}")
    assert json.loads(whole["text"])["EventType"] == "ExecutionSucceeded"
    status, _, body = served.request("GET", f"/console/api/payload?arn={_q(arn)}&ref=op:nope")
    assert status == 404 and "no operation" in body["message"]


def test_payloads_are_sent_as_data_never_as_markup(served):
    arn = served.start("echo", {"html": MARKUP}, name="markup")
    status, headers, raw = served.request("GET", f"/console/api/execution?arn={_q(arn)}")
    assert headers["content-type"] == "application/json"  # the pages put it into the document as text
    assert json.loads(raw["result"]["text"]) == {"html": MARKUP}


# -- actions -----------------------------------------------------------------------------------------------------
def test_a_callback_is_answered_with_success_failure_and_heartbeat(served):
    ok = served.start("approval", {"order": 1}, name="ok")
    [callback] = served.engine.snapshot(ok).open_callbacks
    status, body = served.action("callback-heartbeat", {"callback_id": callback.callback_id})
    assert status == 200 and "heartbeat" in body["message"] and served.engine.get_execution(ok).status == "RUNNING"
    status, body = served.action("callback-succeed", {"callback_id": callback.callback_id,
                                                      "payload": '{"approved": true}'})
    assert status == 200, body
    result = served.engine.get_execution(ok)
    assert result.status == "SUCCEEDED" and result.result["answer"] == {"approved": True}

    no = served.start("approval", {"order": 2}, name="no")
    [callback] = served.engine.snapshot(no).open_callbacks
    status, body = served.action("callback-fail", {"callback_id": callback.callback_id, "error_type": "Rejected",
                                                   "error_message": "over budget"})
    assert status == 200, body
    result = served.engine.get_execution(no)
    assert result.status == "FAILED" and result.error["ErrorType"] == "Rejected"
    assert result.error["ErrorMessage"] == "over budget"


def test_stop_pause_resume_delete_and_run_again(served):
    arn = served.start_only("sleeper", name="s")
    status, body = served.action("pause", {"arn": arn, "reason": "maintenance"})
    assert status == 200 and served.engine.get_execution(arn).pause_status == "PAUSED", body
    assert _execution(served, arn)["status"] == "PAUSED"
    status, body = served.action("resume", {"arn": arn})
    assert status == 200 and served.engine.get_execution(arn).pause_status is None, body
    # (a virtual-time server runs executions onward after a change: the day-long wait passed)
    again = served.start_only("sleeper", name="s2")
    status, body = served.action("stop", {"arn": again})
    assert status == 200 and served.engine.get_execution(again).status == "STOPPED", body
    status, body = served.action("run-again", {"arn": again})
    assert status == 200 and body["arn"] != again
    new = served.engine.snapshot(body["arn"])
    assert new.function_name == "sleeper" and new.name != "s2"
    status, body = served.action("delete", {"arn": again})
    assert status == 200, body
    status, _, body = served.request("GET", f"/console/api/execution?arn={_q(again)}")
    assert status == 404 and "no durable execution" in body["message"]


def test_run_again_starts_the_same_function_with_the_same_input(served):
    first = served.start("echo", {"n": [1, 2, {"k": None}]}, name="first")
    status, body = served.action("run-again", {"arn": first})
    assert status == 200, body
    served.engine.wait(body["arn"])
    result = served.engine.get_execution(body["arn"])
    assert result.status == "SUCCEEDED" and result.result == {"n": [1, 2, {"k": None}]}


# -- refusals: nothing changes, and the answer says why ---------------------------------------------------------
@pytest.mark.parametrize("token, why", [("wrong-token", "token is wrong"), (None, "needs the console's token")])
def test_an_action_without_the_right_token_is_refused_and_changes_nothing(served, token, why):
    arn = served.start("approval", {"order": 1}, name="t")
    [callback] = served.engine.snapshot(arn).open_callbacks
    before = _state(served, arn)
    for action, body in (("stop", {"arn": arn}), ("pause", {"arn": arn}),
                         ("callback-succeed", {"callback_id": callback.callback_id, "payload": "1"})):
        status, answer = served.action(action, body, token=token)
        assert status == 403 and answer["code"] == "BadToken" and why in answer["message"], answer
        assert "nothing was changed" in answer["message"]
    assert _state(served, arn) == before


def test_an_action_from_a_foreign_origin_is_refused_even_with_the_token(served):
    arn = served.start("approval", {"order": 1}, name="o")
    before = _state(served, arn)
    status, answer = served.action("stop", {"arn": arn}, headers={"Origin": "http://evil.example"})
    assert status == 403 and answer["code"] == "ForeignOrigin" and "evil.example" in answer["message"]
    status, _, body = served.request("GET", "/console/api/executions", headers={"Origin": "http://evil.example"})
    assert status == 403 and body["code"] == "ForeignOrigin"  # nor may another site read it
    status, answer = served.action("stop", {"arn": arn}, headers={"Origin": "null"})
    assert status == 403 and answer["code"] == "ForeignOrigin"
    assert _state(served, arn) == before
    status, answer = served.action("stop", {"arn": arn}, headers={"Origin": f"http://{served.host}"})
    assert status == 200 and served.engine.get_execution(arn).status == "STOPPED"  # its own pages may


def test_a_request_naming_another_host_is_refused(served):
    """DNS rebinding: another site's name pointed at this machine cannot read the pages (and their token)."""
    status, _, body = served.request("GET", "/console/", headers={"Host": "evil.example:80"}, token=None)
    assert status == 403 and body["code"] == "ForbiddenHost" and served.console.token not in json.dumps(body)
    for host in ("localhost:1", "127.0.0.1:2", "[::1]:3", "app.localhost"):
        assert served.request("GET", "/console/api/executions", headers={"Host": host})[0] == 200, host


def test_an_action_on_an_unknown_execution_or_callback_says_so(served):
    arn = served.start("approval", {"order": 1}, name="u")
    before = _state(served, arn)
    unknown = arn.replace(arn.rsplit("/", 1)[1], "0" * 32)
    for action in ("stop", "pause", "resume", "delete", "run-again"):
        status, answer = served.action(action, {"arn": unknown})
        assert status == 404 and answer["code"] == "ResourceNotFoundException", (action, answer)
        assert unknown in answer["message"]
    status, answer = served.action("callback-succeed", {"callback_id": "nope", "payload": "1"})
    assert status == 400 and "unknown callback id 'nope'" in answer["message"]
    status, answer = served.action("frobnicate", {"arn": arn})
    assert status == 404 and "unknown action" in answer["message"]
    assert _state(served, arn) == before


def test_an_action_the_service_refuses_shows_the_services_error(served):
    arn = served.start("echo", 1, name="ended")
    status, answer = served.action("stop", {"arn": arn})
    assert status == 400 and "already SUCCEEDED" in answer["message"]
    running = served.start("approval", {"order": 1}, name="running")
    status, answer = served.action("delete", {"arn": running})
    assert status == 409 and "stop it first" in answer["message"]
    assert served.engine.get_execution(running).status == "RUNNING"


def test_a_callback_result_that_is_not_json_is_refused_before_it_is_sent(served):
    arn = served.start("approval", {"order": 1}, name="j")
    [callback] = served.engine.snapshot(arn).open_callbacks
    before = _state(served, arn)
    status, answer = served.action("callback-succeed", {"callback_id": callback.callback_id, "payload": "{approved"})
    assert status == 400 and "not JSON" in answer["message"] and "nothing was sent" in answer["message"]
    assert _state(served, arn) == before


def test_a_change_must_be_a_json_post(served):
    arn = served.start("approval", {"order": 1}, name="p")
    before = _state(served, arn)
    status, _, answer = served.request("POST", "/console/api/actions/stop", b"arn=" + _q(arn).encode(),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "JSON" in answer["message"]
    status, _, answer = served.request("GET", f"/console/api/actions/stop?arn={_q(arn)}")
    assert status == 405 and "POST" in answer["message"]
    status, _, answer = served.request("POST", "/console/api/executions", {})
    assert status == 405
    assert _state(served, arn) == before


def test_on_a_real_time_engine_the_actions_act_on_what_the_engine_runs():
    """`durable-sync console` without --skip-time: the engine's own threads run what an action wakes."""
    from durable_sync.console import mount as mount_console
    from durable_sync.local import LocalEngine
    from durable_sync.local.http import make_server

    from .conftest import FUNCTIONS, Served

    engine = LocalEngine(db=":memory:")
    server = make_server(engine, "127.0.0.1", 0, functions={"echo": FUNCTIONS["echo"], "sleeper": FUNCTIONS["sleeper"]})
    served = Served(engine, server, mount_console(server))
    server.start()
    try:
        arn = served.start_only("sleeper", name="real")
        page = None
        for _ in range(200):  # the first invocation runs on the engine's pool: wait for the day-long wait
            page = _execution(served, arn)
            if any(op["label"] == "a-day" for op in page["operations"]):
                break
            engine.wait(arn, timeout=0.05)
        assert page["status"] == "RUNNING" and page["can"]["stop"], page
        status, body = served.action("stop", {"arn": arn})
        assert status == 200 and engine.wait(arn, timeout=10).status == "STOPPED", body
        status, body = served.action("run-again", {"arn": arn})
        assert status == 200, body
        assert engine.get_execution(body["arn"]).status == "RUNNING"
        status, body = served.action("stop", {"arn": body["arn"]})
        assert status == 200, body
    finally:
        server.close()
        engine.close()
