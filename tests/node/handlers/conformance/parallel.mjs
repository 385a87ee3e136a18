// The parallel suite (8-x) written with @aws/durable-execution-sdk-js.
import { NestingType, withDurableExecution } from "@aws/durable-execution-sdk-js";

const sequential = (extra = {}) => ({ maxConcurrency: 1, ...extra });
const returns = (value) => async () => value;
const stepReturning = (value) => async (ctx) => ctx.step(async () => value);
const fails = (message = "branch failed") => async () => {
  const error = new Error(message);
  error.name = "BranchError";
  throw error;
};
const projection = (result, ...fields) => {
  const values = {
    completionReason: result.completionReason, status: result.status, successCount: result.successCount,
    failureCount: result.failureCount, totalCount: result.totalCount,
  };
  return Object.fromEntries(fields.map((name) => [name, values[name]]));
};
const ALL = ["completionReason", "status", "successCount", "failureCount", "totalCount"];

export const r8_1 = withDurableExecution(async (event, context) =>
  (await context.parallel("parallel", [stepReturning("task-1"), stepReturning("task-2")], sequential()))
    .getResults());

export const r8_3 = withDurableExecution(async (event, context) =>
  (await context.parallel("named", [{ name: "first", func: returns("one") }, { name: "second", func: returns("two") }],
    sequential())).getResults());

export const r8_6 = withDurableExecution(async (event, context) =>
  projection(await context.parallel("failfast", [returns("ok"), fails(), returns("never")],
    sequential({ completionConfig: { toleratedFailureCount: 0 } })), ...ALL));

export const r8_8 = withDurableExecution(async (event, context) =>
  projection(await context.parallel("min-successful", [0, 1, 2, 3].map((i) => returns(`b${i}`)),
    sequential({ completionConfig: { minSuccessful: 2 } })), "completionReason", "successCount", "totalCount"));

export const r8_12 = withDurableExecution(async (event, context) =>
  (await context.parallel("flat", [stepReturning("fa"), stepReturning("fb")],
    sequential({ nesting: NestingType.FLAT }))).getResults());

export const r8_14 = withDurableExecution(async (event, context) =>
  (await context.parallel("replay", [stepReturning("b0"), async (ctx) => {
    await ctx.wait({ seconds: 2 });
    return "b1";
  }], sequential())).getResults());
