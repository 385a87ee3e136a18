// Handlers written with @aws/durable-execution-sdk-js for the feature tests (tests/node/test_features.py).
import { StepError, withDurableExecution } from "@aws/durable-execution-sdk-js";

// map over the event's items, two at a time; each item a step of its own.
export const mapItems = withDurableExecution(async (event, context) => {
  const result = await context.map("square", event.items, async (ctx, item) =>
    ctx.step(`square-${item}`, async () => item * item), { maxConcurrency: 2 });
  return { squares: result.getResults(), succeeded: result.successCount };
});

// waitForCallback: the submitter step hands the callback id to "the outside" (here: its result is the id).
export const approval = withDurableExecution(async (event, context) => {
  const answer = await context.waitForCallback("approval", async (callbackId, ctx) => {
    ctx.logger.info(`approval requested: ${callbackId}`);
  }, { timeout: { hours: 1 } });
  const decision = JSON.parse(answer);
  return context.step("record", async () => `${event.order}: ${decision.approved ? "approved" : "rejected"}`);
});

// A step that fails for good after its retries: the StepError reaches the handler, which reports it.
export const retriesThenFails = withDurableExecution(async (event, context) => {
  try {
    await context.step("flaky", async () => { throw new Error(`attempt failed for ${event.id}`); },
      { retryStrategy: (error, attempt) => (attempt < 3 ? { shouldRetry: true, delay: { seconds: 10 } }
        : { shouldRetry: false }) });
    return "unexpected";
  } catch (error) {
    return { caught: error instanceof StepError, name: error.name, message: error.message };
  }
});

// Chained invoke of a Python function registered with the same engine.
export const callsPython = withDurableExecution(async (event, context) => {
  const doubled = await context.invoke("py-double", { n: event.n });
  return context.step("after", async () => ({ fromPython: doubled, plusOne: doubled.n + 1 }));
});

// Called by a Python function through chained invoke.
export const greet = withDurableExecution(async (event, context) => {
  const greeting = await context.step("greet", async () => `hello ${event.name} from node`);
  await context.wait({ seconds: 30 });
  return { greeting };
});
