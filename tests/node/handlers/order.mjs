// A step / wait / callback workflow: the JS testing package's cloud runner drives it (js/order.test.mjs).
import { withDurableExecution } from "@aws/durable-execution-sdk-js";

export const handler = withDurableExecution(async (event, context) => {
  const reserved = await context.step("reserve", async () => ({ orderId: event.orderId, items: event.items }));
  await context.wait("cool-off", { minutes: 10 });
  const decision = await context.waitForCallback("approval", async (callbackId, ctx) => {
    ctx.logger.info(`approval needed for ${reserved.orderId}: ${callbackId}`);
  }, { timeout: { hours: 24 } });
  const { approved } = JSON.parse(decision);
  return context.step("finish", async () => ({ orderId: reserved.orderId, status: approved ? "SHIPPED" : "CANCELLED" }));
});
