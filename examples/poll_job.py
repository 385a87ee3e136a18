"""Poll a long-running job with ``ctx.wait_for_condition`` until it is done, then fetch its results.

Run it:  durable-sync run examples/poll_job.py --input '{"dataset": "sales-2025"}' --skip-time --db :memory:

The job service is simulated: a job gets 35 % further each time it is polled. Between polls the
execution is suspended (no process waits); the wait strategy backs off 5 s, 10 s, 20 s, ... up to
60 s, and gives up with WaitForConditionError after 10 polls. Each poll's state (status,
progress) is checkpointed, so a crash or redeploy resumes polling where it was.
"""
from __future__ import annotations

import durable_sync as ds


class JobService:
    """A stand-in for a batch-job API: progress grows with every status request."""

    STEP_PERCENT = 35

    @staticmethod
    def submit(dataset: str) -> str:
        return f"job-{dataset}"

    @staticmethod
    def status(job_id: str, polls_so_far: int) -> dict:
        progress = min(100, (polls_so_far + 1) * JobService.STEP_PERCENT)
        return {"job_id": job_id, "status": "SUCCEEDED" if progress == 100 else "RUNNING", "progress": progress}


def check_job(state: dict, check_ctx: ds.StepContext) -> dict:
    """One poll: ask the service how the job is doing. Returns the new state."""
    report = JobService.status(state["job_id"], state["polls"])
    check_ctx.logger.info("poll %d of %s: %s %d%%", check_ctx.attempt, state["job_id"], report["status"],
                          report["progress"])
    if report["status"] == "FAILED":
        raise RuntimeError(f"job {state['job_id']} failed")  # fails the wait_for_condition at once
    return {**report, "polls": state["polls"] + 1}


WAIT_FOR_JOB = ds.create_wait_strategy(
    lambda state: state["status"] != "SUCCEEDED",  # keep polling while this is true
    max_attempts=10, initial_delay=5, max_delay=60, backoff_rate=2.0, jitter="none")


@ds.durable_handler
def handler(event: dict, ctx: ds.DurableContext) -> dict:
    dataset = (event or {}).get("dataset", "demo")
    job_id = ctx.step("submit-job", lambda s: JobService.submit(dataset))
    initial = {"job_id": job_id, "status": "SUBMITTED", "progress": 0, "polls": 0}
    try:
        final = ctx.wait_for_condition(check_job, ds.WaitForConditionConfig(wait_strategy=WAIT_FOR_JOB,
                                                                            initial_state=initial),
                                       name="wait-for-job")
    except ds.WaitForConditionError as exc:
        return {"job_id": job_id, "status": "GAVE_UP", "reason": exc.error_message}
    rows = ctx.step("fetch-results", lambda s: {"rows": 1000, "location": f"s3://results/{job_id}.csv"})
    return {"job_id": job_id, "status": final["status"], "polls": final["polls"], **rows}
