"""No library function looks like a test to pytest: a test module that imports a function named ``test_*``
collects and runs it as a test (``vsr.evaluate.test_spec`` once was one)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import vsr


def _library_modules():
    for info in pkgutil.walk_packages(vsr.__path__, "vsr."):
        if not info.name.endswith("__main__"):  # running it is the CLI
            yield importlib.import_module(info.name)


def test_no_library_function_is_named_like_a_test():
    named_like_tests = [
        f"{module.__name__}.{name}"
        for module in _library_modules()
        for name, function in vars(module).items()
        if inspect.isfunction(function) and function.__module__ == module.__name__ and name.startswith("test")
    ]
    assert named_like_tests == []
