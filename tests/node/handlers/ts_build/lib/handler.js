"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.handler = void 0;
// src.ts compiled as tsc emits it (tsc --module commonjs --target es2022 src.ts --outDir lib).
const durable_execution_sdk_js_1 = require("@aws/durable-execution-sdk-js");
exports.handler = (0, durable_execution_sdk_js_1.withDurableExecution)(async (event, context) => {
    const price = await context.step("price", async () => event.quantity * 12.5);
    await context.wait({ seconds: 5 });
    return { orderId: event.orderId, total: price };
});
