// Plain handlers that end their process without answering, each in its own way.
export const exits = async () => process.exit(7);
export const killed = async () => process.kill(process.pid, "SIGKILL");
export const uncaught = () => new Promise(() => setTimeout(() => { throw new Error("uncaught boom"); }, 0));
export const rejection = () => { Promise.reject(new Error("unhandled boom")); return new Promise(() => {}); };
