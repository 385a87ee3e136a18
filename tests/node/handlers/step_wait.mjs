import { withDurableExecution } from "@aws/durable-execution-sdk-js";

export const handler = withDurableExecution(async (event, context) => {
  const first = await context.step("first", async () => `hello ${event.name}`);
  await context.wait({ seconds: 2 });
  const second = await context.step("second", async () => first.toUpperCase());
  return { first, second };
});
