"""Unit tests of the conformance harness itself (matcher, variables, loader, callback driver).

They need neither durable_sync nor the requirement files.
"""
from __future__ import annotations

import json
import logging
import random
import re
from types import SimpleNamespace

import pytest

from . import harness
from .harness import MatchError, Matcher


def match(expected, actual, bindings=None):
    matcher = Matcher(bindings)
    matcher.match(expected, actual)
    return matcher.bindings


def mismatch(expected, actual, bindings=None) -> MatchError:
    with pytest.raises(MatchError) as info:
        Matcher(bindings).match(expected, actual)
    return info.value


# ----------------------------------------------------------------- binding


def test_name_binds_on_first_sight_then_must_be_equal():
    matcher = Matcher()
    matcher.match({"Id": "${ID1}"}, {"Id": "abc"})
    assert matcher.bindings == {"ID1": "abc"}
    matcher.match({"Id": "${ID1}"}, {"Id": "abc"})
    with pytest.raises(MatchError) as info:
        matcher.match({"Id": "${ID1}"}, {"Id": "abd"})
    assert info.value.path == ("Id",)
    assert "abc" in str(info.value) and "abd" in str(info.value)


def test_two_names_may_not_silently_share_one_binding():
    bindings = match([{"Id": "${A}"}, {"Id": "${B}"}], [{"Id": "x"}, {"Id": "y"}])
    assert bindings == {"A": "x", "B": "y"}


def test_prebound_variable_must_equal():
    match({"Name": "${CB_NAME}"}, {"Name": "q1w2e3"}, {"CB_NAME": "q1w2e3"})
    err = mismatch({"Name": "${CB_NAME}"}, {"Name": "other"}, {"CB_NAME": "q1w2e3"})
    assert err.path == ("Name",)


def test_binding_keeps_type():
    bindings = match({"n": "${N}"}, {"n": 3})
    assert bindings["N"] == 3
    mismatch([{"n": "${N}"}, {"n": "${N}"}], [{"n": 3}, {"n": "3"}])


def test_bound_names_are_substituted_inside_strings():
    match({"Payload": '"${INPUT_1}"'}, {"Payload": '"abc123"'}, {"INPUT_1": "abc123"})
    err = mismatch({"Payload": '"${INPUT_1}"'}, {"Payload": "abc123"}, {"INPUT_1": "abc123"})
    assert err.path == ("Payload",)


def test_unbound_name_inside_a_string_is_reported():
    err = mismatch({"Payload": "x-${NOPE}"}, {"Payload": "x-1"})
    assert "NOPE" in str(err)


# ----------------------------------------------------------------- regex


def test_regex_is_re_search_on_str_of_value():
    match({"d": "${/^[0-5]$/}"}, {"d": 3})
    match({"d": "${/^([0-9]|10)$/}"}, {"d": 10})
    match({"t": "${/.*TransientError$/}"}, {"t": "mod.TransientError"})
    match({"p": "${/wrapped/}"}, {"p": '{"wrapped": "x"}'})
    err = mismatch({"d": "${/^[0-5]$/}"}, {"d": 7})
    assert err.path == ("d",) and "^[0-5]$" in str(err)


def test_regex_does_not_bind():
    assert match({"d": "${/.*/}"}, {"d": "x"}) == {}


# ----------------------------------------------------------------- subset / missing keys


def test_dicts_match_as_subsets():
    match({"A": 1}, {"A": 1, "B": 2})
    match({"Outer": {"A": 1}}, {"Outer": {"A": 1, "Extra": True}, "More": []})


def test_missing_key_fails_with_its_path():
    err = mismatch({"Details": {"Error": {"Payload": {}}}}, {"Details": {"Error": {}}})
    assert err.path == ("Details", "Error", "Payload")
    assert "missing" in str(err)


@pytest.mark.parametrize("anything", [{}, "*"])
@pytest.mark.parametrize("actual", [None, 0, "", "text", [], [1], {"k": "v"}, {}])
def test_empty_dict_and_star_mean_any_value_key_present(anything, actual):
    match({"K": anything}, {"K": actual})
    err = mismatch({"K": anything}, {"Other": actual})
    assert err.path == ("K",)


def test_mapping_expected_but_scalar_found():
    err = mismatch({"D": {"A": 1}}, {"D": "text"})
    assert err.path == ("D",)


# ----------------------------------------------------------------- lists


def test_lists_need_the_same_length():
    match([1, 2], [1, 2])
    err = mismatch({"L": [1, 2]}, {"L": [1, 2, 3]})
    assert err.path == ("L",) and "2 items" in str(err)
    mismatch({"L": [1, 2, 3]}, {"L": [1, 2]})


def test_lists_match_element_by_element_with_path():
    err = mismatch({"L": [{"a": 1}, {"a": 2}]}, {"L": [{"a": 1}, {"a": 3}]})
    assert err.path == ("L", 1, "a")
    assert "L[1].a" in str(err)


# ----------------------------------------------------------------- int vs str


@pytest.mark.parametrize(
    "expected, actual",
    [(1, "1"), ("1", 1), (1, True), (True, 1), (1, 1.0), (0, None), (None, 0), (2, 3), ("a", "b")],
)
def test_integers_stay_integers_and_types_are_not_coerced(expected, actual):
    mismatch({"v": expected}, {"v": actual})


@pytest.mark.parametrize("value", [1, 0, -5, True, False, None, "1", 1.5])
def test_equal_scalars_match(value):
    match({"v": value}, {"v": value})


def test_float_expected_accepts_equal_int():
    match({"v": 2.0}, {"v": 2})


def test_payload_is_compared_as_stored_text():
    match({"Payload": '"x"'}, {"Payload": '"x"'})
    mismatch({"Payload": '"x"'}, {"Payload": "x"})
    match({"Payload": "42"}, {"Payload": "42"})
    mismatch({"Payload": "42"}, {"Payload": 42})


# ----------------------------------------------------------------- exact result comparison


def test_compare_exact():
    harness.compare_exact({"a": [1, "x", None]}, {"a": [1, "x", None]})
    harness.compare_exact(None, None)
    for expected, actual in [({"a": 1}, {"a": 1, "b": 2}), ([1], [1, 2]), (42, "42"), (None, ""), (1, True)]:
        with pytest.raises(MatchError):
            harness.compare_exact(expected, actual)


# ----------------------------------------------------------------- variables


def test_bind_variables_gen_str_and_literals():
    bound = harness.bind_variables(
        {"A": "${GEN_STR:8}", "B": "${GEN_STR:12}", "C": "literal", "D": 5, "E": "${A}-x"}, random.Random(1)
    )
    assert re.fullmatch(r"[a-z0-9]{8}", bound["A"])
    assert re.fullmatch(r"[a-z0-9]{12}", bound["B"])
    assert bound["C"] == "literal" and bound["D"] == 5
    assert bound["E"] == bound["A"] + "-x"
    assert harness.bind_variables(None) == {}


def test_bind_variables_is_reproducible_from_a_seed():
    rng1, seed = harness.make_rng("fixed")
    rng2, _ = harness.make_rng(seed)
    assert harness.bind_variables({"A": "${GEN_STR:10}"}, rng1) == harness.bind_variables({"A": "${GEN_STR:10}"}, rng2)


def test_substitute_deep_keeps_whole_value_types_and_leaves_unbound_names():
    bindings = {"A": "abc", "N": 7}
    assert harness.substitute(["${A}", "${B}"], bindings) == ["abc", "${B}"]
    assert harness.substitute({"n": "${N}", "s": "n=${N}", "t": "${A}!"}, bindings) == {"n": 7, "s": "n=7", "t": "abc!"}
    assert harness.substitute("/${X}/", {"X": "a.b"}, regex=True) == r"/a\.b/"
    assert harness.substitute(None, bindings) is None


# ----------------------------------------------------------------- history


def _ev(eid, etype, **kw):
    return {"EventId": eid, "EventType": etype, **kw}


def test_history_matched_by_event_id_and_unlisted_events_ignored():
    actual = [
        _ev(1, "ExecutionStarted"),
        _ev(2, "StepStarted", Id="s1", SubType="Step", StepStartedDetails={}),
        _ev(3, "StepSucceeded", Id="s1", SubType="Step", StepSucceededDetails={"Result": {"Payload": '"x"'}}),
        _ev(4, "InvocationCompleted", InvocationCompletedDetails={}),
    ]
    expected = [
        _ev(3, "StepSucceeded", Id="${ID1}", StepSucceededDetails={"Result": {"Payload": '"x"'}}),
        _ev(2, "StepStarted", Id="${ID1}"),
    ]
    assert harness.history_mismatches(expected, actual, Matcher()) == []


def test_history_failure_message_shows_expected_actual_and_path():
    actual = [_ev(2, "StepFailed", Id="s1", StepFailedDetails={"RetryDetails": {"CurrentAttempt": 2}})]
    expected = [_ev(2, "StepFailed", Id="${ID1}", StepFailedDetails={"RetryDetails": {"CurrentAttempt": 1}})]
    with pytest.raises(AssertionError) as info:
        harness.assert_history(expected, actual, Matcher())
    text = str(info.value)
    assert "event[EventId=2].StepFailedDetails.RetryDetails.CurrentAttempt" in text
    assert "expected event:" in text and "actual event:" in text and "actual history:" in text


def test_history_missing_event_id_is_reported():
    problems = harness.history_mismatches([_ev(5, "InvocationCompleted")], [_ev(1, "ExecutionStarted")], Matcher())
    assert len(problems) == 1 and "no actual event" in problems[0]


# ----------------------------------------------------------------- logs


def test_log_matching_regex_with_variables_and_counts():
    lines = [{"message": "Greeting step started for: ab12"}, {"message": "done ab12"}, {"message": "other"}]
    bindings = {"INPUT_1": "ab12"}
    assert harness.log_mismatches([{"match": {"message": "/${INPUT_1}/"}, "count": 2}], lines, bindings) == []
    assert harness.log_mismatches([{"match": {"message": r"/\[ERROR\]/"}, "count": 0}], lines, bindings) == []
    problems = harness.log_mismatches([{"match": {"message": "/${INPUT_1}/"}, "count": 1}], lines, bindings)
    assert problems and "expected count 1, got 2" in problems[0]
    assert harness.log_mismatches([{"match": {"message": "other"}, "count": 1}], lines, bindings) == []


def test_log_capture_collects_records_with_message(tmp_path):
    capture = harness.LogCapture(tmp_path / "log.jsonl")
    with capture:
        logging.getLogger("some.module").info("hello %s", "world")
    logging.getLogger("some.module").info("after the capture")
    lines = capture.lines()
    assert [line["message"] for line in lines] == ["hello world"]


def test_execution_log_lines_filter_by_arn_when_records_carry_one():
    lines = [{"message": "a", "executionArn": "arn1"}, {"message": "b", "executionArn": "arn2"}, {"message": "c"}]
    assert [x["message"] for x in harness.execution_log_lines(lines, "arn1")] == ["a"]
    plain = [{"message": "a"}, {"message": "b"}]
    assert harness.execution_log_lines(plain, "arn1") == plain


# ----------------------------------------------------------------- loader


def test_discover_orders_suites_and_ids_naturally(tmp_path, monkeypatch):
    for rel in ["step/1-10.yaml", "step/1-2.yaml", "step/1-1.yaml", "child/3-1.yaml", "wait/2-1.yaml"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("description: x\n")
    monkeypatch.setenv(harness.CONFORMANCE_ENV, str(tmp_path))
    assert harness.conformance_dir() == tmp_path.resolve()
    ids = [r.test_id for r in harness.discover()]
    assert ids == ["step/1-1", "step/1-2", "step/1-10", "wait/2-1", "child/3-1"]
    assert harness.discover()[0].load() == {"description": "x"}


def test_missing_directory_yields_a_single_none(tmp_path, monkeypatch):
    monkeypatch.setenv(harness.CONFORMANCE_ENV, str(tmp_path / "absent"))
    assert list(harness.iter_requirements_or_none()) == [None]


def test_raw_result_prefers_raw_text_then_falls_back_to_json_dumps():
    with_raw = SimpleNamespace(get_execution=lambda arn: SimpleNamespace(raw_result='"x"', result="x"))
    without_raw = SimpleNamespace(get_execution=lambda arn: SimpleNamespace(result={"a": 1}))
    assert harness.raw_result(with_raw, "arn") == '"x"'
    assert json.loads(harness.raw_result(without_raw, "arn")) == {"a": 1}


# ----------------------------------------------------------------- async driving (fake engine)


class FakeCallbackEngine:
    """Just enough of LocalEngine for the AsyncInvoke loop: callbacks, heartbeats, time."""

    def __init__(self, callbacks, parent=None):
        self.now = 0
        self.events = [_ev(1, "ExecutionStarted")]
        self.calls = []
        self.pending = {}
        if parent:
            self._add("ContextStarted", Id=parent[0], Name=parent[1], SubType="WaitForCallback")
        for oid, name in callbacks:
            fields = {"Id": oid, "SubType": "Callback", "CallbackStartedDetails": {"CallbackId": f"cb-{oid}"}}
            if name is not None:
                fields["Name"] = name
            if parent:
                fields["ParentId"] = parent[0]
            self._add("CallbackStarted", **fields)
            self.pending[f"cb-{oid}"] = oid
        self._add("InvocationCompleted")

    def _add(self, etype, **fields):
        self.events.append(_ev(len(self.events) + 1, etype, **fields))

    def start(self, handler, input=None, name=None):
        return "arn:fake"

    def history(self, arn):
        return list(self.events)

    def get_execution(self, arn):
        status = "RUNNING" if self.pending else "SUCCEEDED"
        return SimpleNamespace(status=status, result=None, raw_result="null", error=None)

    def advance(self, seconds):
        self.now += seconds

    def send_callback_success(self, callback_id, result):
        self.calls.append(("success", callback_id, result, self.now))
        self._add("CallbackSucceeded", Id=self.pending.pop(callback_id))

    def send_callback_failure(self, callback_id, error):
        self.calls.append(("failure", callback_id, error, self.now))
        self._add("CallbackFailed", Id=self.pending.pop(callback_id))

    def send_callback_heartbeat(self, callback_id):
        self.calls.append(("heartbeat", callback_id, None, self.now))


def test_async_loop_applies_actions_in_history_order_with_delays():
    engine = FakeCallbackEngine([("a", "name-a"), ("b", "name-b")])
    data = {
        "AsyncInvoke": True,
        "ExpectedResult": {"ExecutionStatus": "SUCCEEDED"},
        "CallbackActions": [
            {"CallbackName": "${B}", "Operation": "success", "Payload": "${PB}", "Delay": 4},
            {"CallbackName": "${A}", "Operation": "failure", "Delay": 1,
             "Payload": {"ErrorType": "RejectedError", "ErrorMessage": "no"}},
        ],
    }
    bindings = {"A": "name-a", "B": "name-b", "PB": "pay"}
    outcome = harness.run_requirement(data, None, engine, name="n", bindings=bindings)
    assert outcome.status == "SUCCEEDED"
    assert engine.calls == [
        ("failure", "cb-a", {"ErrorType": "RejectedError", "ErrorMessage": "no"}, 1),
        ("success", "cb-b", '"pay"', 5),
    ]


def test_async_loop_heartbeat_keeps_callback_open_for_a_later_poll():
    engine = FakeCallbackEngine([("a", "n")])
    data = {
        "AsyncInvoke": True,
        "ExpectedResult": {"ExecutionStatus": "SUCCEEDED"},
        "CallbackActions": [
            {"CallbackName": "n", "Operation": "heartbeat"},
            {"CallbackName": "*", "Operation": "success", "Delay": 1},
        ],
    }
    harness.run_requirement(data, None, engine, name="n", bindings={})
    assert [c[0] for c in engine.calls] == ["heartbeat", "success"]
    assert engine.calls[1][2] is None  # no Payload: no result
    assert engine.calls[1][3] == harness.POLL_SECONDS + 1  # next poll, then its Delay


def test_async_loop_unnamed_callback_inherits_wait_for_callback_name_and_regex_names():
    engine = FakeCallbackEngine([("a", None)], parent=("ctx", "approve-order"))
    data = {
        "AsyncInvoke": True,
        "ExpectedResult": {"ExecutionStatus": "SUCCEEDED"},
        "CallbackActions": [{"CallbackName": "${/^approve-/}", "Operation": "success", "Payload": {"ok": True}}],
    }
    harness.run_requirement(data, None, engine, name="n", bindings={})
    assert engine.calls == [("success", "cb-a", '{"ok": true}', 0)]


def test_async_history_only_stops_once_the_history_matches():
    engine = FakeCallbackEngine([("a", "n")])
    data = {
        "AsyncInvoke": True,
        "ExpectedExecutionHistory": [_ev(2, "CallbackStarted", Id="${ID}"), _ev(3, "InvocationCompleted")],
    }
    outcome = harness.run_requirement(data, None, engine, name="n", bindings={})
    assert engine.now == 0 and outcome.status == "RUNNING"
    harness.check_outcome(data, outcome, {})


def test_log_min_count_and_after():
    lines = [{"hook": "start", "n": 1}, {"message": "body"}, {"hook": "end", "n": 1}, {"hook": "start", "n": 2}]
    rules = [
        {"match": {"hook": "start"}, "min_count": 2},
        {"match": {"hook": "end", "n": 1}, "count": 1, "after": [{"hook": "start", "n": 1}, {"message": "/bo/"}]},
    ]
    assert harness.log_mismatches(rules, lines, {}) == []
    problems = harness.log_mismatches([{"match": {"hook": "start"}, "min_count": 3}], lines, {})
    assert problems and "expected count >= 3, got 2" in problems[0]
    # "start n=1" is not after "end n=1"; "start n=2" is
    problems = harness.log_mismatches([{"match": {"hook": "start"}, "after": [{"hook": "end"}]}], lines, {})
    assert len(problems) == 1 and "record #0 is not after" in problems[0]
    problems = harness.log_mismatches([{"match": {"hook": "end"}, "after": [{"hook": "missing"}]}], lines, {})
    assert "(there is none)" in problems[0]


def test_log_match_needs_the_key_and_keeps_types():
    lines = [{"plugin": "P", "first": True, "n": 1}]
    assert harness.log_mismatches([{"match": {"first": True}, "count": 1}], lines, {}) == []
    assert harness.log_mismatches([{"match": {"n": "1"}, "count": 0}], lines, {}) == []
    assert harness.log_mismatches([{"match": {"parent": None}, "count": 0}], lines, {}) == []
    assert harness.log_mismatches([{"match": {"op": "${ID1}"}, "count": 0}], [{"op": "x"}], {"ID1": "y"}) == []
    assert harness.log_mismatches([{"match": {"op": "${ID1}"}, "count": 1}], [{"op": "y"}], {"ID1": "y"}) == []


def test_log_capture_takes_json_lines_printed_to_stdout_in_order(tmp_path, capsys):
    import sys
    import threading

    capture = harness.LogCapture(tmp_path / "log.jsonl")
    with capture:
        print(json.dumps({"plugin": "P", "hook": "a"}))
        logging.getLogger("some.module").info("between")
        sys.stdout.write('{"plugin": "P",')  # a line written in pieces
        worker = threading.Thread(target=lambda: print(json.dumps({"plugin": "Q"})))
        worker.start()
        worker.join()
        sys.stdout.write(' "hook": "b"}\n')
        print("plain text")
    assert [ln.get("hook", ln.get("plugin", ln.get("message"))) for ln in capture.lines()] == ["a", "between", "Q", "b"]
    assert "plain text" in capsys.readouterr().out


def test_execution_log_lines_know_the_plugins_arn_key():
    lines = [{"plugin": "P", "durableExecutionArn": "arn1"}, {"message": "m", "executionArn": "arn1"},
             {"plugin": "P", "durableExecutionArn": "arn2"}]
    assert len(harness.execution_log_lines(lines, "arn1")) == 2
