"""The one option checker of the engine: every bad option raises :class:`OptionError`.

Messages name the option, the value given and what is allowed (with a "did you mean" for
misspelt choices), so a user can fix the call from the message alone.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Iterable

import numpy as np

from .errors import OptionError, closest_names

__all__ = ["OptionError", "check_bool", "check_choice", "check_float", "check_int"]


def check_choice(option: str, value, choices: Iterable[str]):
    """``value`` if it is one of ``choices``, else an :class:`OptionError` listing them."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    hint = closest_names(str(value), choices) if isinstance(value, str) else []
    raise OptionError(
        f"{option} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
        + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else "")
    )


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    if low is not None:
        return "a positive" if low == 1 else f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return "any"


def check_int(option: str, value, low: int | None = 1, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (bools and non-integral numbers refused).

    The default ``low=1`` makes "a positive integer", the most common rule.
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if ok:
        value = int(value)
        ok = (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        allowed = _range_text(low, high)
        noun = "a positive integer" if allowed == "a positive" else f"an integer {allowed}".replace(" any", "")
        raise OptionError(f"{option} must be {noun}, got {value!r}")
    return value


def check_float(option: str, value, low: float | None = None, high: float | None = None, *, open_low: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    number = None
    if not isinstance(value, (bool, str)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    ok = number is not None and math.isfinite(number)
    if ok:
        ok = (low is None or (number > low if open_low else number >= low)) and (high is None or number <= high)
    if not ok:
        if low == 0 and high is None:
            allowed = "a positive number" if open_low else "a non-negative number"
        elif low is not None and high is not None:
            allowed = f"a number in {'(' if open_low else '['}{low}, {high}]"
        elif low is not None:
            allowed = f"a number {'above' if open_low else 'at least'} {low}"
        elif high is not None:
            allowed = f"a number at most {high}"
        else:
            allowed = "a finite number"
        raise OptionError(f"{option} must be {allowed}, got {value!r}")
    return number


def check_bool(option: str, value) -> bool:
    """``value`` if it is a real ``bool`` (``0``/``1`` or strings are refused: they hide mistakes)."""
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(f"{option} must be True or False, got {value!r}")
    return bool(value)


def check_keywords(function, options: dict, skip: int = 0, name: str | None = None) -> dict:
    """``options`` if every key is a keyword parameter of ``function``, else an :class:`OptionError`.

    ``skip`` leaves out that many leading parameters (the network, the image, the target: not
    options). The message names the unknown option, the closest valid one and the whole list, so
    a misspelt or misplaced option never surfaces as Python's bare ``TypeError``.
    """
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [n for n, p in inspect.signature(function).parameters.items() if p.kind in kinds][skip:]
    unknown = [name for name in options if name not in params]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], params, n=2, cutoff=0.6)  # only near misspellings
        raise OptionError(
            f"{name or function.__name__} has no option {', '.join(repr(u) for u in unknown)}"
            + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ";")
            + f" its options are {', '.join(params)}"
        )
    return options


def check_callback(option: str, value, signature: str):
    """``value`` if it is callable or ``None``, else an ``OptionError`` showing how it is called (``signature``)."""
    if value is not None and not callable(value):
        raise OptionError(f"{option} must be a function {signature} or None, got {type(value).__name__} {value!r:.60}")
    return value


def call_back(callback, signature: str, *args):
    """``callback(*args)``. A Python error inside the user's function (a ``TypeError``, ``KeyError``, ...) becomes
    an ``OptionError`` saying it came from the callback (the original chained); the caller's cleanup has run.
    Exceptions of the caller's own classes (the Explorer's ``Cancelled``) pass through: raising one is how a
    callback stops a run."""
    try:
        return callback(*args)
    except Exception as err:
        if type(err).__module__ != "builtins":
            raise
        raise OptionError(f"the callback {signature} raised {type(err).__name__}: {err} (fix the callback; "
                          "the run stopped there and the model is as it was)") from err
