// The wait suite (2-x) written with @aws/durable-execution-sdk-js.
import { withDurableExecution } from "@aws/durable-execution-sdk-js";

export const r2_1 = withDurableExecution(async (event, context) => {
  await context.wait({ seconds: 2 });
});

export const r2_3 = withDurableExecution(async (event, context) => {
  await context.wait("wait-1", { seconds: 2 });
  await context.wait("wait-2", { seconds: 2 });
  return { completedWaits: 2 };
});

export const r2_5 = withDurableExecution(async (event, context) => {
  await context.wait({ hours: 1 });
});
