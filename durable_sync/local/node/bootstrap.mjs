// The Node.js side of durable_sync's Node runtime (durable_sync/local/node_runtime.py).
//
//   node bootstrap.mjs check MODULE EXPORT   load the module, find the export, answer, exit
//   node bootstrap.mjs serve MODULE EXPORT   load it, then run one invocation per request
//
// Like Lambda's Node.js runtime: the module is loaded once when the process starts (the init phase), then
// each request is one invocation: the exported handler is called with the event and a Lambda context
// object, and its result or error is the answer. A request is one JSON line on stdin
// ({"event": ..., "context": {...}}); an answer is one JSON line on the file descriptor named by
// DURABLE_SYNC_ANSWER_FD, so that whatever the handler prints never mixes with it:
//
//   {"result": VALUE} | {"error": {errorType, errorMessage, trace}} | {"loadError": {...}} | {"ready": true}
//
// A crash (process.exit, an uncaught exception, an unhandled rejection) writes no answer: the engine sees
// the process end without one and records Runtime.ExitError, as Lambda does. The process ends when stdin
// closes.
import { spawnSync } from "node:child_process";
import { writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const ANSWER_FD = Number(process.env.DURABLE_SYNC_ANSWER_FD);
delete process.env.DURABLE_SYNC_ANSWER_FD;

function answer(message) {
  const buffer = Buffer.from(`${JSON.stringify(message)}\n`, "utf8");
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

// Node gives an ES module's SyntaxError no location; `node --check` prints it ("/path:LINE").
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
    memoryLimitInMB: info.memoryLimitInMB,
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

async function invoke(handler, request) {
  let message;
  try {
    const result = await callHandler(handler, request.event, lambdaContext(request.context));
    message = { result: result === undefined ? null : result };
  } catch (error) {
    message = { error: errorObject(error, "Error") };
  }
  try {
    answer(message);
  } catch (error) {
    answer({ error: errorObject(error, "Runtime.InvalidOutput") });
  }
}

const [mode, modulePath, exportPath] = process.argv.slice(2);
const loaded = await loadHandler(modulePath, exportPath);
if (loaded.loadError || mode === "check") {
  answer(loaded.loadError ? { loadError: loaded.loadError } : { ready: true });
  process.exit(0);
}
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim()) await invoke(loaded.handler, JSON.parse(line));
}
process.exit(0);
