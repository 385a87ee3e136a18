const { withDurableExecution } = require("@aws/durable-execution-sdk-js");

exports.handler = withDurableExecution(async (event, context) => {
  const n = await context.step("double", async () => event.n * 2);
  return { n };
});
