// For the SIGKILL test (test_cli.py): the first time, the "charge" step announces itself once the engine
// has its START, then hangs, so the test can kill the whole engine mid-step; the run after the restart
// finishes it.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withDurableExecution } from "@aws/durable-execution-sdk-js";
import { untilStepStarted } from "./started.mjs";

const count = (file) => (existsSync(file) ? Number(readFileSync(file, "utf8")) : 0);
const bump = (file) => writeFileSync(file, String(count(file) + 1));

export const handler = withDurableExecution(async (event, context) => {
  const reservation = await context.step("reserve", async () => {
    bump(join(event.dir, "reserve-runs"));
    return `res-${event.order}`;
  });
  await context.wait({ seconds: 30 });
  const receipt = await context.step("charge", async () => {
    bump(join(event.dir, "charge-runs"));
    if (count(join(event.dir, "charge-runs")) === 1) {
      await untilStepStarted(context);
      writeFileSync(join(event.dir, "charging"), "now");
      await new Promise(() => setInterval(() => {}, 1000));  // hangs until the engine is killed
    }
    return `charged-${reservation}`;
  });
  return { reservation, receipt };
});
