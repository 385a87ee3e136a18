// The Node.js side of durable_sync's Node runtime (durable_sync/local/node_runtime.py).
//
// Like Lambda's Node.js runtime, for one invocation: read the request, load the handler's module,
// call the exported handler with the event and a Lambda context object, and report the result or the
// error. The request is one JSON object on stdin; the answer is one JSON object written to the file
// descriptor named by DURABLE_SYNC_ANSWER_FD, so that whatever the handler prints never mixes with it:
//
//   request  {"module": ABS_PATH, "export": "handler", "event": ..., "context": {...}, "check": false}
//   answer   {"result": VALUE} | {"error": {errorType, errorMessage, trace}} | {"loadError": {...}}
//
// With "check": true the handler is only loaded and verified (registration), not called.
// A crash (process.exit, an uncaught exception, an unhandled rejection) writes no answer: the engine
// sees the process end without one and records Runtime.ExitError, as Lambda does.
import { spawnSync } from "node:child_process";
import { readFileSync, writeSync } from "node:fs";
import { pathToFileURL } from "node:url";

const ANSWER_FD = Number(process.env.DURABLE_SYNC_ANSWER_FD);
delete process.env.DURABLE_SYNC_ANSWER_FD;

function answer(message) {
  const text = JSON.stringify(message);
  const buffer = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < buffer.length) {
    offset += writeSync(ANSWER_FD, buffer, offset, buffer.length - offset);
  }
}

function errorObject(error, fallbackType) {
  if (error instanceof Error) {
    return {
      errorType: error.name && error.name !== "Error" ? error.name : (error.constructor?.name || fallbackType),
      errorMessage: String(error.message ?? ""),
      trace: typeof error.stack === "string" ? error.stack.split("\n") : [],
    };
  }
  let message;
  try {
    message = typeof error === "string" ? error : JSON.stringify(error);
  } catch {
    message = String(error);
  }
  return { errorType: fallbackType, errorMessage: String(message), trace: [] };
}

// Node gives an ES module's SyntaxError no location; `node --check` prints it ("file:///path:LINE").
function syntaxErrorLocation(modulePath) {
  const checked = spawnSync(process.execPath, ["--check", modulePath], { encoding: "utf8" });
  const line = (checked.stderr || "").split("\n").find((text) => /:\d+$/.test(text.trim()));
  return line ? line.trim() : "";
}

async function loadHandler(modulePath, exportPath) {
  let namespace;
  try {
    namespace = await import(pathToFileURL(modulePath).href);
  } catch (error) {
    const detail = errorObject(error, "Error");
    const where = error instanceof SyntaxError ? syntaxErrorLocation(modulePath) : "";
    return { loadError: { ...detail, errorType: "Runtime.ImportModuleError",
                          errorMessage: `could not load ${modulePath}: ${detail.errorType}: ${detail.errorMessage}` +
                                        (where ? ` (at ${where})` : "") } };
  }
  // ES modules export names; a CommonJS module (module.exports) arrives as `default` too.
  const lookup = (root) => exportPath.split(".").reduce((obj, key) => (obj == null ? undefined : obj[key]), root);
  let handler = lookup(namespace);
  if (handler === undefined && namespace.default && typeof namespace.default === "object") {
    handler = lookup(namespace.default);
  }
  if (typeof handler !== "function") {
    const names = Object.keys(namespace).concat(
      namespace.default && typeof namespace.default === "object" ? Object.keys(namespace.default) : [])
      .filter((name) => name !== "default" && typeof (namespace[name] ?? namespace.default?.[name]) === "function");
    const found = names.length ? `; functions it exports: ${[...new Set(names)].sort().join(", ")}` : "";
    const what = handler === undefined ? "does not export" : `exports a ${typeof handler} as`;
    return { loadError: { errorType: "Runtime.HandlerNotFound",
                          errorMessage: `${modulePath} ${what} ${JSON.stringify(exportPath)}${found}`, trace: [] } };
  }
  return { handler };
}

function lambdaContext(info) {
  const deadline = Date.now() + info.remainingMs;
  return {
    functionName: info.functionName,
    functionVersion: info.functionVersion,
    invokedFunctionArn: info.invokedFunctionArn,
    memoryLimitInMB: String(info.memoryLimitInMB),
    awsRequestId: info.awsRequestId,
    logGroupName: info.logGroupName,
    logStreamName: info.logStreamName,
    identity: undefined,
    clientContext: undefined,
    tenantId: info.tenantId,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function callHandler(handler, event, context) {
  // Async handlers (withDurableExecution gives one) return a promise; a handler with three
  // parameters that returns nothing answers through the callback, as on Lambda.
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (error, result) => {
      if (settled) return;
      settled = true;
      if (error !== undefined && error !== null) reject(error);
      else resolve(result);
    };
    context.done = callback;
    context.succeed = (result) => callback(null, result);
    context.fail = (error) => callback(error ?? new Error("handler failed"));
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (error) {
      callback(error);
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then((result) => callback(null, result), (error) => callback(error ?? new Error("rejected")));
    } else if (handler.length < 3) {
      callback(null, returned);
    }
  });
}

async function main() {
  const request = JSON.parse(readFileSync(0, "utf8"));
  const loaded = await loadHandler(request.module, request.export);
  if (loaded.loadError) {
    answer({ loadError: loaded.loadError });
    process.exit(0);
  }
  if (request.check) {
    answer({ result: null });
    process.exit(0);
  }
  let message;
  try {
    const result = await callHandler(loaded.handler, request.event, lambdaContext(request.context));
    message = { result: result === undefined ? null : result };
  } catch (error) {
    message = { error: errorObject(error, "Error") };
  }
  try {
    answer(message);
  } catch (error) {
    answer({ error: errorObject(error, "Runtime.InvalidOutput") });
  }
  // Lambda freezes the sandbox once the handler has answered: timers the handler left armed never run.
  process.exit(0);
}

await main();
