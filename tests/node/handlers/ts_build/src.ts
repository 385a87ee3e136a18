// The source of lib/handler.js (tsc --module commonjs --target es2022 src.ts --outDir lib).
import { DurableContext, withDurableExecution } from "@aws/durable-execution-sdk-js";

interface Order { orderId: string; quantity: number }

export const handler = withDurableExecution(async (event: Order, context: DurableContext) => {
  const price = await context.step("price", async () => event.quantity * 12.5);
  await context.wait({ seconds: 5 });
  return { orderId: event.orderId, total: price };
});
