throw new Error("configuration missing: TABLE_NAME");
