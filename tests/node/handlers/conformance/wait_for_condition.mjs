// The wait_for_condition suite (6-x) written with @aws/durable-execution-sdk-js.
import { JitterStrategy, createWaitStrategy, withDurableExecution } from "@aws/durable-execution-sdk-js";

const until = (predicate) => (state) =>
  (predicate(state) ? { shouldContinue: false } : { shouldContinue: true, delay: { seconds: 1 } });
const increment = async (state) => state + 1;

export const r6_1 = withDurableExecution(async (event, context) =>
  context.waitForCondition(increment, { waitStrategy: until((s) => s >= event), initialState: 0 }));

export const r6_2 = withDurableExecution(async (event, context) =>
  context.waitForCondition(async (state) => state, { waitStrategy: until((s) => s >= 5), initialState: 5 }));

export const r6_6 = withDurableExecution(async (event, context) =>
  context.waitForCondition(increment, {
    waitStrategy: createWaitStrategy({
      shouldContinuePolling: () => true, maxAttempts: 3, initialDelay: { seconds: 1 }, maxDelay: { seconds: 1 },
      backoffRate: 1, jitter: JitterStrategy.NONE,
    }),
    initialState: event,
  }));

export const r6_7 = withDurableExecution(async (event, context) =>
  context.waitForCondition(async () => { throw new Error("check failed"); },
    { waitStrategy: until(() => true), initialState: 0 }));

const prefixed = {
  serialize: async (value) => (value === undefined ? undefined : `state:${value}`),
  deserialize: async (text) => {
    if (text === undefined) return undefined;
    if (!text.startsWith("state:")) throw new Error(`not an encoded state: ${text}`);
    return text.slice("state:".length);
  },
};

export const r6_11 = withDurableExecution(async (event, context) =>
  context.waitForCondition(async (state) => `${state}x`,
    { waitStrategy: until((s) => s.length >= 2), initialState: "", serdes: prefixed }));
