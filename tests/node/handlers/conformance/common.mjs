// Helpers shared by the JavaScript handlers of the conformance requirements.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetDurableExecutionHistoryCommand, LambdaClient } from "@aws-sdk/client-lambda";

function counterFile(context, key) {
  const dir = process.env.DURABLE_CONFORMANCE_STATE_DIR || join(tmpdir(), "durable_sync_conformance");
  mkdirSync(dir, { recursive: true });
  const arn = context.executionContext.durableExecutionArn;
  return join(dir, createHash("sha256").update(`${arn}/${key}`).digest("hex").slice(0, 32));
}

// How many times `key` ran in this execution so far, across invocations (each is a new Node process).
export function count(context, key) {
  try {
    return Number(readFileSync(counterFile(context, key), "utf8"));
  } catch {
    return 0;
  }
}

// Counts one more run of `key`; returns the new count.
export function bump(context, key) {
  const runs = count(context, key) + 1;
  writeFileSync(counterFile(context, key), String(runs));
  return runs;
}

// Dies as a Lambda sandbox does when its runtime crashes, once the step that calls it is recorded as
// started: an at-least-once step's START is sent without waiting for it, so this asks the engine
// (GetDurableExecutionHistory) until it has it.
export async function crash(context) {
  const client = new LambdaClient({});
  const arn = context.executionContext.durableExecutionArn;
  for (let attempt = 0; attempt < 500; attempt++) {
    const { Events = [] } = await client.send(new GetDurableExecutionHistoryCommand({ DurableExecutionArn: arn }));
    const open = new Set();
    for (const event of Events) {
      if (event.EventType === "StepStarted") open.add(event.Id);
      if (event.EventType === "StepSucceeded" || event.EventType === "StepFailed") open.delete(event.Id);
    }
    if (open.size > 0) process.exit(129);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the step's START never reached the engine");
}

export class TransientError extends Error {
  constructor(message) {
    super(message);
    this.name = "TransientError";
  }
}

export const fixedRetry = (maxAttempts, seconds = 1) => (error, attempt) =>
  attempt < maxAttempts ? { shouldRetry: true, delay: { seconds } } : { shouldRetry: false };
