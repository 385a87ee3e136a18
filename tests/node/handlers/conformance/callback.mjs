// The callback suite (4-x) written with @aws/durable-execution-sdk-js.
import { withDurableExecution } from "@aws/durable-execution-sdk-js";

export const r4_1 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event);
  return result;
});

export const r4_3 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event, { timeout: { seconds: 5 } });
  return result;
});

export const r4_4 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event, { heartbeatTimeout: { seconds: 5 } });
  return result;
});

export const r4_5 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event, { heartbeatTimeout: { seconds: 10 } });
  return result;
});

export const r4_6 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event);
  return result;
});

export const r4_9 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event);
  await context.wait({ seconds: 5 });
  return result;
});

export const r4_12 = withDurableExecution(async (event, context) => {
  const [result] = await context.createCallback(event);
  const value = await result;
  await context.wait({ seconds: 2 });
  return value;
});

export const r4_17 = withDurableExecution(async (event, context) => {
  const [first] = await context.createCallback(event[0]);
  const a = await first;
  const [second] = await context.createCallback(event[1]);
  const b = await second;
  return [a, b];
});
