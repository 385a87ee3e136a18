// Crashes the Node process the first time each step runs (a marker file remembers), then succeeds.
import { existsSync, writeFileSync } from "node:fs";
import { withDurableExecution } from "@aws/durable-execution-sdk-js";

const once = (marker) => {
  if (existsSync(marker)) return false;
  writeFileSync(marker, "crashed");
  return true;
};

export const handler = withDurableExecution(async (event, context) => {
  const before = await context.step("before", async () => "safe");
  const crashed = await context.step("crash", async () => {
    if (once(event.marker)) {
      if (event.how === "exit") process.exit(7);
      if (event.how === "uncaught") setTimeout(() => { throw new Error("uncaught boom"); }, 0);
      if (event.how === "rejection") Promise.reject(new Error("unhandled boom"));
      if (event.how === "kill") process.kill(process.pid, "SIGKILL");
      await new Promise((resolve) => setTimeout(resolve, 5000));
    }
    return "survived";
  });
  return { before, crashed };
});
