"""Errors: the wire ErrorObject, and the official SDK's names for the same classes."""
from __future__ import annotations

import durable_sync as ds
from durable_sync.errors import error_object


def test_official_error_names_are_the_same_classes():
    assert ds.DurableExecutionsError is ds.DurableError
    assert ds.NonDeterministicExecutionError is ds.NonDeterminismError
    err = ds.StepError("boom", error_type="KeyError", error_data='{"k": 1}')
    assert (err.message, err.data, err.error_type) == ("boom", '{"k": 1}', "KeyError")


def test_an_exception_whose_str_raises_still_gives_an_error_object():
    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no text")

    try:
        raise Broken()
    except Broken as exc:
        obj = error_object(exc)
    assert obj["ErrorType"] == "Broken" and "str() raised RuntimeError" in obj["ErrorMessage"]
    assert obj["StackTrace"]
