"""Trait types whose allowed values are also what the front end offers: one source for both.

A :class:`Choice` is traitlets' ``Enum`` with a label per value; an :class:`IntRange` /
:class:`FloatRange` is traitlets' ``Int`` / ``Float`` with ``min``, ``max`` and the step a slider
uses. :func:`describe` reads them off a widget class, so the menus and sliders the renderer draws
come from the very traits that validate what it sends back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import traitlets
from traitlets import TraitError


def _labelled(options: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    return dict(options) if isinstance(options, Mapping) else {value: str(value) for value in options}


def check_option(name: str, value, allowed: Sequence) -> None:
    """Raise a ``TraitError`` naming the trait, the value and what is allowed."""
    if value not in allowed:
        raise TraitError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


class Choice(traitlets.Enum):
    """One of a fixed set of values, each with the label menus show (``options``: value -> label).

    ``unknown``, when given, is the error message: a format string with ``{value}`` and ``{allowed}``.
    """

    def __init__(self, options: Mapping[str, str] | Sequence[str], default_value, unknown: str | None = None, **kwargs):
        self.labels = _labelled(options)
        self.unknown = unknown
        super().__init__(tuple(self.labels), default_value=default_value, **kwargs)

    def validate(self, obj, value):
        if self.unknown is not None and value not in self.values:
            raise TraitError(self.unknown.format(value=value, allowed=", ".join(map(str, self.values))))
        check_option(self.name, value, self.values)
        return value

    def options(self) -> list[list[str]]:
        return [[value, label] for value, label in self.labels.items()]


def instance_range(obj, name: str) -> dict | None:
    """The range an object narrows a trait to (``obj.ranges_now[name]``: e.g. by the model's input size)."""
    return (getattr(obj, "ranges_now", None) or {}).get(name)


class IntRange(traitlets.Int):
    """An integer in ``[min, max]``; ``step`` is the slider's step in the front end.

    An object may narrow the range for itself (``ranges_now = {trait: {min, max, step}}``, within the
    class's): what depends on the network, e.g. occlusion windows that fit the model's input.
    """

    def __init__(self, default_value: int, min: int, max: int, step: int = 1, **kwargs):  # noqa: A002
        super().__init__(default_value, min=min, max=max, **kwargs)
        self.step = step

    def validate(self, obj, value):
        low, high = self.range(obj)["min"], self.range(obj)["max"]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            raise TraitError(f"{self.name} must be between {low} and {high}, got {value}")
        return super().validate(obj, value)

    def range(self, obj=None) -> dict:
        return instance_range(obj, self.name) or {"min": self.min, "max": self.max, "step": self.step}


class FloatRange(traitlets.Float):
    """A float in ``[min, max]``; ``step`` is the slider's step in the front end."""

    def __init__(self, default_value: float, min: float, max: float, step: float, **kwargs):  # noqa: A002
        super().__init__(default_value, min=min, max=max, **kwargs)
        self.step = step

    def validate(self, obj, value):
        low, high = self.range(obj)["min"], self.range(obj)["max"]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            raise TraitError(f"{self.name} must be between {low:g} and {high:g}, got {value}")
        return super().validate(obj, value)

    def range(self, obj=None) -> dict:
        return instance_range(obj, self.name) or {"min": self.min, "max": self.max, "step": self.step}


def describe(widget: traitlets.HasTraits) -> tuple[dict[str, list[list[str]]], dict[str, dict]]:
    """The ``[value, label]`` options of every synced :class:`Choice` and the range of every synced range trait."""
    options, ranges = {}, {}
    for name, trait in widget.traits(sync=True).items():
        if isinstance(trait, Choice):
            options[name] = trait.options()
        elif isinstance(trait, (IntRange, FloatRange)):
            ranges[name] = trait.range(widget)
    return options, ranges
