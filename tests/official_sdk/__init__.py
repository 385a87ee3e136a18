"""Handlers written with the official AWS SDK (aws_durable_execution_sdk_python), run on the engine."""
