// The JS testing package's CloudDurableTestRunner pointed at `durable-sync serve` instead of AWS.
// Run by tests/node/test_cloud_runner.py: AWS_ENDPOINT_URL_LAMBDA is the engine's URL and
// ORDER_FUNCTION the name the handler (handlers/order.mjs) is served as.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CloudDurableTestRunner, InvocationType, WaitingOperationStatus,
} from "@aws/durable-execution-sdk-js-testing";

test("order workflow: step, wait, callback answered by the test", async () => {
  const runner = new CloudDurableTestRunner({
    functionName: process.env.ORDER_FUNCTION,
    config: { invocationType: InvocationType.Event, pollInterval: 50 },
  });
  const approval = runner.getOperation("approval");
  const running = runner.run({ payload: { orderId: "o-42", items: ["book"] } });

  await approval.waitForData(WaitingOperationStatus.SUBMITTED);
  await approval.sendCallbackSuccess(JSON.stringify({ approved: true }));
  const execution = await running;

  assert.equal(execution.getStatus(), "SUCCEEDED");
  assert.deepEqual(execution.getResult(), { orderId: "o-42", status: "SHIPPED" });
  assert.deepEqual(runner.getOperation("reserve").getStepDetails().result, { orderId: "o-42", items: ["book"] });
  assert.equal(runner.getOperation("cool-off").getWaitDetails().waitSeconds, 600);
  assert.equal(runner.getOperation("finish").getStepDetails().result.status, "SHIPPED");
});
