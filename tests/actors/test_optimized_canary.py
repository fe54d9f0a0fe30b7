"""Proof of how this run was started: with library asserts (plain ``pytest``), or without them
(``python -O``), exactly as the invocation promised.

CI runs the actor tests twice: ``pytest`` as usual, and optimized::

    POLYN_EXPECT_OPTIMIZED=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \\
        python -O -m pytest -p pytest_trio.plugin -p polyn.testing.plugin tests/actors

so that nothing in the runtime leans on an ``assert`` of its own or of trio's (trio's internal
checks are asserts; under ``-O`` a double wake-up shows as a different failure, or none). The
variable says which run this is meant to be, and this canary fails whenever the run is not
that: a job that lost its ``-O`` fails here instead of quietly testing the debug build again.

``-O`` alone is not enough under pytest: pytest rewrites the asserts of every package that
ships a ``pytest11`` plugin (polyn does) into ``raise AssertionError`` statements, which ``-O``
keeps. Turning plugin autoloading off (and loading the two plugins the suite needs by module
name) stops that, and this canary checks the result on compiled code, not only on
``__debug__``: functions of the runtime and of trio that have an ``assert`` in their source must
be able to raise from it exactly when asserts are on. The checks in the test modules themselves
keep working under ``-O`` because pytest still rewrites *their* asserts, which the last test
shows.
"""

from __future__ import annotations

import ast
import dis
import inspect
import os
import sys
import textwrap
import types
from collections.abc import Iterator

import pytest
import trio._core._run

import polyn.actors._supervisor

EXPECT_OPTIMIZED = os.environ.get("POLYN_EXPECT_OPTIMIZED", "") == "1"


def functions_with_asserts(module: types.ModuleType) -> Iterator[types.FunctionType]:
    """Every function defined in ``module``'s file (methods included) with an assert in it."""
    for _, value in inspect.getmembers(module):
        candidates = [value]
        if inspect.isclass(value):
            candidates = [v for _, v in inspect.getmembers(value, inspect.isfunction)]
        for candidate in candidates:
            if not inspect.isfunction(candidate):
                continue
            if candidate.__code__.co_filename != module.__file__:
                continue
            try:
                source = inspect.getsource(candidate)
            except OSError:
                continue  # generated code (a dataclass's __init__, say)
            tree = ast.parse(textwrap.dedent(source))
            if any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
                yield candidate


def asserts_live(code: types.CodeType) -> bool:
    """Whether ``code`` (or code nested in it) can still raise from an assert statement: the
    compiler's own form (LOAD_ASSERTION_ERROR) or the ``raise AssertionError(...)`` that
    pytest's assertion rewriting puts in its place, which ``-O`` does not strip."""
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_ASSERTION_ERROR":
            return True
        if instruction.opname == "LOAD_GLOBAL" and instruction.argval == "AssertionError":
            return True
    return any(asserts_live(const) for const in code.co_consts if isinstance(const, types.CodeType))


def test_the_run_is_optimized_exactly_when_the_invocation_says_so() -> None:
    optimize = sys.flags.optimize
    assert bool(optimize) == EXPECT_OPTIMIZED, (
        f"POLYN_EXPECT_OPTIMIZED={int(EXPECT_OPTIMIZED)} but sys.flags.optimize={optimize}"
    )
    assert __debug__ is not EXPECT_OPTIMIZED


@pytest.mark.parametrize("module", [polyn.actors._supervisor, trio._core._run])
def test_library_asserts_are_live_exactly_when_asserts_are_on(
    module: types.ModuleType,
) -> None:
    functions = list(functions_with_asserts(module))
    # Not vacuous: the module really has asserts to strip.
    assert functions, f"{module.__name__} has no function with an assert statement"
    compiled_in = {f.__qualname__: asserts_live(f.__code__) for f in functions}
    expected = not EXPECT_OPTIMIZED
    assert compiled_in == dict.fromkeys(compiled_in, expected)


def test_asserts_in_test_modules_still_check_under_optimization() -> None:
    # pytest rewrites this module's asserts into explicit raises, which -O keeps.
    with pytest.raises(AssertionError):
        assert 1 + 1 == 3
