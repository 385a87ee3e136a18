// The step suite (1-x) written with @aws/durable-execution-sdk-js.
import { StepSemantics, retryPresets, withDurableExecution } from "@aws/durable-execution-sdk-js";
import { TransientError, bump, count, crash, fixedRetry } from "./common.mjs";

const noRetry = { retryStrategy: retryPresets.noRetry };

export const r1_1 = withDurableExecution(async (event, context) =>
  context.step(async () => `Hello, ${event}!`));

export const r1_2 = withDurableExecution(async (event, context) =>
  context.step("custom_step_name", async () => `Hello, ${event}!`));

export const r1_3 = withDurableExecution(async (event, context) => {
  const first = await context.step(async () => "first");
  return context.step(async () => `${first}_second`);
});

const upper = (value) => (typeof value === "string" ? value.toUpperCase()
  : Array.isArray(value) ? value.map(upper)
  : value && typeof value === "object" ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, upper(v)]))
  : value);
const uppercaseSerdes = {
  serialize: async (value) => (value === undefined ? undefined : JSON.stringify(upper(value))),
  deserialize: async (text) => (text === undefined ? undefined : JSON.parse(text)),
};

export const r1_6 = withDurableExecution(async (event, context) =>
  context.step(async () => event, { serdes: uppercaseSerdes }));

export const r1_10 = withDurableExecution(async (event, context) => {
  try {
    await context.step(async () => {
      bump(context, "1-10");
      throw new Error("permanent failure");
    }, noRetry);
  } catch {
    // the failed step's error, thrown again on replay without running the step
  }
  await context.wait({ seconds: 1 });
  if (count(context, "1-10") !== 1) throw new Error(`the failed step ran ${count(context, "1-10")} times`);
  return null;
});

export const r1_11 = withDurableExecution(async (event, context) =>
  context.step(async () => {
    if (bump(context, "1-11") === 1) throw new Error("first attempt fails");
    return "Operation succeeded";
  }, { retryStrategy: fixedRetry(3) }));

export const r1_12 = withDurableExecution(async (event, context) =>
  context.step(async () => { throw new Error("always fails"); }, { retryStrategy: fixedRetry(4) }));

export const r1_15 = withDurableExecution(async (event, context) =>
  context.step(async () => {
    if (bump(context, "1-15") === 1) throw new TransientError("transient failure");
    return "recovered";
  }, {
    retryStrategy: (error) => (error instanceof TransientError
      ? { shouldRetry: true, delay: { seconds: 1 } } : { shouldRetry: false }),
  }));

export const r1_16 = withDurableExecution(async (event, context) =>
  context.step(async () => { throw new TransientError("transient failure"); }, {
    retryStrategy: (error) => (error instanceof TransientError
      ? { shouldRetry: false } : { shouldRetry: true, delay: { seconds: 1 } }),
  }));

export const r1_17 = withDurableExecution(async (event, context) =>
  context.step("at_most_once_flaky_step", async (stepContext) => {
    stepContext.logger.info(`at-most-once step processing ${event}`);
    await crash(context);
  }, { semantics: StepSemantics.AtMostOncePerRetry, ...noRetry }));

export const r1_18 = withDurableExecution(async (event, context) =>
  context.step(async (stepContext) => {
    stepContext.logger.info(`at-most-once step processing ${event}`);
    if (bump(context, "1-18") === 1) await crash(context);
    return "succeeded on second attempt";
  }, { semantics: StepSemantics.AtMostOncePerRetry, retryStrategy: fixedRetry(3) }));

export const r1_19 = withDurableExecution(async (event, context) =>
  context.step(async () => { throw new Error("step failed"); }, noRetry));

export const r1_20 = withDurableExecution(async (event, context) => {
  let value;
  try {
    value = await context.step(async () => { throw new Error("step failed"); }, noRetry);
  } catch {
    value = "fallback_result";
  }
  return context.step(async () => value);
});
