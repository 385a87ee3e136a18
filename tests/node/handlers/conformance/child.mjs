// The child context suite (3-x) written with @aws/durable-execution-sdk-js.
import { retryPresets, withDurableExecution } from "@aws/durable-execution-sdk-js";
import { bump, crash, fixedRetry } from "./common.mjs";

const noRetry = { retryStrategy: retryPresets.noRetry };

export const r3_1 = withDurableExecution(async (event, context) =>
  context.runInChildContext(async (child) => child.step(async () => event)));

export const r3_4 = withDurableExecution(async (event, context) =>
  context.runInChildContext("failing_child", async (child) =>
    child.step(async () => { throw new Error("child step failed"); }, noRetry)));

export const r3_6 = withDurableExecution(async (event, context) =>
  context.runInChildContext("outer", async (outer) => {
    await outer.step("outer_step", async () => event);
    return outer.runInChildContext("inner", async (inner) => inner.step("inner_step", async () => event));
  }));

export const r3_7 = withDurableExecution(async (event, context) =>
  context.runInChildContext("child_with_retry", async (child) =>
    child.step(async () => {
      if (bump(context, "3-7") === 1) throw new Error("first attempt fails");
      return event;
    }, { retryStrategy: fixedRetry(3) })));

export const r3_10 = withDurableExecution(async (event, context) =>
  context.runInChildContext("child_with_step_and_wait", async (child) => {
    const value = await child.step(async () => event);
    await child.wait({ seconds: 1 });
    return value;
  }));

export const r3_11 = withDurableExecution(async (event, context) => {
  const large = await context.runInChildContext("large_child", async (child) => {
    const small = await child.step(async () => "x");
    return small.repeat(300 * 1024);
  });
  await context.wait({ seconds: 1 });
  return large.length;
});

export const r3_12 = withDurableExecution(async (event, context) =>
  context.runInChildContext(async (child) =>
    child.step(async () => {
      if (bump(context, "3-12") === 1) await crash(context);
      return event;
    })));
