"""Conformance tests: the shared requirement YAMLs run against durable_sync + the local engine."""
