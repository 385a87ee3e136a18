import { nothing } from "durable-sync-no-such-package";
export const handler = async () => nothing;
