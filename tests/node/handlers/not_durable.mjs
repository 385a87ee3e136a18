// A plain Lambda handler: not wrapped with withDurableExecution.
export const handler = async (event) => ({ greeting: `hello ${event.name}` });
