// Helpers shared by the JavaScript handlers of the conformance requirements.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { untilStepStarted } from "../started.mjs";

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

// Dies as a Lambda sandbox does when its runtime crashes, once the step that calls it is recorded as started.
export async function crash(context) {
  await untilStepStarted(context);
  process.exit(129);
}

export class TransientError extends Error {
  constructor(message) {
    super(message);
    this.name = "TransientError";
  }
}

export const fixedRetry = (maxAttempts, seconds = 1) => (error, attempt) =>
  attempt < maxAttempts ? { shouldRetry: true, delay: { seconds } } : { shouldRetry: false };
