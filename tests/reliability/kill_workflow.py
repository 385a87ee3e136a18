"""The engine process that test_kill_resume.py SIGKILLs: a workflow with steps, waits, callbacks and maps.

Run as a script: ``DB=... LEDGER=... PHASES=... python kill_workflow.py``. It opens the engine on
the SQLite database, attaches to the execution named "chaos" (starting it the first time),
runs it, answers every callback that is waiting (the answer is logged ``cback`` once the engine
accepted it), and prints the outcome as JSON on its last line. ``KILL_AT=before:N`` /
``after:N`` makes it SIGKILL itself just before / just after the N-th COMMIT of the store.

Ledger lines (appended with O_APPEND, one write each, so a kill never interleaves them):
``run KEY - ATTEMPT PID`` when a step body starts, ``ret KEY TOKEN ATTEMPT PID`` when it
returns its result token, ``ack KEY TOKEN 0 PID`` when the next step body starts on the thread
``ctx.step`` handed that token back to (SPEC §3: the result is saved by then),
``cback NAME BY 0 PID`` once the engine accepted a callback answer.
"""
import json
import os
import sys
import threading
import time
import uuid

import durable_sync as ds
from durable_sync.local import LocalEngine
from tests.reliability.killing import kill_at_commit_from_env

LEDGER = os.environ.get("LEDGER", os.devnull)
PID = os.getpid()
STEP_WORK = float(os.environ.get("STEP_WORK", "0.01"))  # seconds of simulated work per step body
RETRY = ds.RetryPolicy(max_attempts=1000, initial_delay=1, backoff_rate=1.0, jitter="none")
AMO = ds.StepConfig(step_semantics=ds.StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=RETRY)
ALO = ds.StepConfig(retry_strategy=RETRY)


def log(*parts) -> None:
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(p) for p in parts) + "\n").encode())
    finally:
        os.close(fd)


GOT_BACK = threading.local()  # .results: (key, token) this thread got back from ctx.step, not acked yet


def pending():
    if not hasattr(GOT_BACK, "results"):
        GOT_BACK.results = []
    return GOT_BACK.results


def step(c, key, config):
    fresh = []

    def body(step_ctx):
        for done, token in pending():
            log("ack", done, token, 0, PID)
        pending().clear()
        log("run", key, "-", step_ctx.attempt, PID)
        time.sleep(STEP_WORK)
        token = f"{PID}.{uuid.uuid4().hex[:8]}"
        log("ret", key, token, step_ctx.attempt, PID)
        fresh.append(token)
        return token

    value = c.step(key, body, config=config)
    if fresh:
        pending().append((key, value))
    return value


@ds.durable_handler
def handler(event, ctx):
    out = {"steps": {}, "callbacks": {}}
    for p in range(event["phases"]):
        for i in range(3):
            key = f"p{p}s{i}"
            out["steps"][key] = step(ctx, key, AMO if i == 2 else ALO)
        ctx.wait(5, name=f"p{p}-wait")
        callback = ctx.create_callback(name=f"p{p}-cb")

        def branch(c, item, index, items, p=p):
            first = step(c, f"p{p}m{index}a", AMO if index == 1 else ALO)
            if index % 2 == 0:
                c.wait(3, name=f"p{p}m{index}-wait")
            return [first, step(c, f"p{p}m{index}b", ALO)]

        batch = ctx.map(list(range(4)), branch, name=f"p{p}-map", config=ds.MapConfig(max_concurrency=2))
        batch.throw_if_error()
        for index, (first, second) in enumerate(batch.get_results()):
            out["steps"][f"p{p}m{index}a"], out["steps"][f"p{p}m{index}b"] = first, second
        out["callbacks"][f"p{p}-cb"] = callback.result()
        with ctx.child(f"p{p}-child") as c:
            out["steps"][f"p{p}c"] = step(c, f"p{p}c", ALO)
            c.wait(2, name=f"p{p}c-wait")
    return out


def main() -> int:
    kill_at_commit_from_env()
    engine = LocalEngine(db=os.environ["DB"], skip_time=True, functions={"handler": handler})
    try:
        arn = engine.start(handler, {"phases": int(os.environ["PHASES"])}, name="chaos")
        for _ in range(1000):
            result = engine.wait(arn)
            if result.status != "RUNNING":
                break
            waiting = [op for op in engine.operations(arn) if op["Type"] == "CALLBACK" and op["Status"] == "STARTED"]
            if not waiting:
                print(json.dumps({"status": "STUCK", "history": [e["EventType"] for e in engine.history(arn)][-8:]}))
                return 3
            for op in waiting:
                by = f"driver-{PID}-{uuid.uuid4().hex[:6]}"
                engine.send_callback_success(op["CallbackDetails"]["CallbackId"], json.dumps({"by": by}))
                log("cback", op["Name"], by, 0, PID)
        print(json.dumps({"status": result.status, "result": result.result, "error": result.error, "arn": arn}))
        return 0
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
