// Waits until the engine has recorded the running step as started. An at-least-once step's START is sent
// without waiting for it; tests that kill a process mid-step use this to know the START reached the engine
// (they ask it, with GetDurableExecutionHistory, as any client could).
import { GetDurableExecutionHistoryCommand, LambdaClient } from "@aws-sdk/client-lambda";

export async function untilStepStarted(context) {
  const client = new LambdaClient({});
  const arn = context.executionContext.durableExecutionArn;
  for (let attempt = 0; attempt < 500; attempt++) {
    const { Events = [] } = await client.send(new GetDurableExecutionHistoryCommand({ DurableExecutionArn: arn }));
    const open = new Set();
    for (const event of Events) {
      if (event.EventType === "StepStarted") open.add(event.Id);
      if (event.EventType === "StepSucceeded" || event.EventType === "StepFailed") open.delete(event.Id);
    }
    if (open.size > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the step's START never reached the engine");
}
