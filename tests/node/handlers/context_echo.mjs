// Not a durable handler: answers with what Lambda's Node.js runtime gives a handler.
export const handler = async (event, context) => ({
  event,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  awsRequestId: context.awsRequestId,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  remaining: context.getRemainingTimeInMillis(),
  env: Object.fromEntries(["AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME",
    "DURABLE_SYNC_ANSWER_FD"]
    .map((name) => [name, process.env[name] ?? null])),
});

// A callback-style handler (three parameters), as older Lambda code is written.
export function callbackStyle(event, context, callback) {
  setImmediate(() => callback(null, { doubled: event.n * 2 }));
}

export const throws = async () => {
  class ValidationError extends Error {}
  const error = new ValidationError("bad order");
  error.name = "ValidationError";
  throw error;
};

export const hangs = () => new Promise(() => setInterval(() => {}, 1000));

export const prints = async () => {
  console.log("to stdout");
  console.error("to stderr");
  return "answer";
};

export const nested = { inner: { handler: async () => "nested" } };
export const notAFunction = 42;

// Module-level state: survives between invocations that a warm process runs.
let calls = 0;
export const counter = async () => ({ calls: ++calls, pid: process.pid });
export const crashes = async () => process.exit(3);
