// The step example of @aws/durable-execution-sdk-js's DurableContext.step() documentation, runnable on
// durable_sync's local engine.
//
// Run it (Node.js 18+, from examples/node after `npm install`):
//   durable-sync serve --skip-time --db :memory: -f user-orders=step_example.mjs:handler
//   aws lambda invoke --endpoint-url http://127.0.0.1:9014 --function-name user-orders \
//       --cli-binary-format raw-in-base64-out --payload '{"userId": "u-7"}' /dev/stdout
//
// "fetch-user-data" is a single atomic step with a retry strategy: the (simulated) user API fails on its
// first call and the step is retried durably after 1 s. "process-order" groups durable operations in a
// child context: a wait and two steps.
import { createRetryStrategy, withDurableExecution } from "@aws/durable-execution-sdk-js";

const exponentialBackoff = createRetryStrategy({
  maxAttempts: 3, initialDelay: { seconds: 1 }, backoffRate: 2, maxDelay: { seconds: 10 },
});

// A (simulated) user API that times out on the step's first attempt.
async function fetchUserFromAPI(userId, attempt) {
  if (attempt === 1) throw new Error(`user API timed out for ${userId}`);
  return { userId, name: `User ${userId}`, plan: "pro" };
}

const validateOrder = (user) => ({ userId: user.userId, total: user.plan === "pro" ? 80 : 100 });
const chargePayment = (order) => ({ ...order, receipt: `charge-${order.userId}-${order.total}` });

export const handler = withDurableExecution(async (event, context) => {
  const user = await context.step(
    "fetch-user-data",
    async (ctx) => fetchUserFromAPI(event.userId, ctx.attempt),
    { retryStrategy: exponentialBackoff },
  );

  const receipt = await context.runInChildContext("process-order", async (childCtx) => {
    await childCtx.wait({ seconds: 1 });
    const order = await childCtx.step("validate", async () => validateOrder(user));
    return childCtx.step("charge", async () => chargePayment(order));
  });

  return { user: user.name, receipt: receipt.receipt };
});
