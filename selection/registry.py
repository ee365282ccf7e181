"""Strategy registry: names -> classes, with clear errors.

``get_strategy("default")`` returns the configured default (``hybrid``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from selection.base import QueryStrategy

__all__ = ["DEFAULT", "available", "get_strategy", "register"]

#: the name the ``"default"`` alias points to
DEFAULT = "hybrid"

_REGISTRY: dict[str, type[QueryStrategy]] = {}

T = TypeVar("T", bound=type[QueryStrategy])


def register(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: ``@register("my_strategy")`` (defaults to the class's ``name``)."""

    def deco(cls: T) -> T:
        key = name or cls.name
        if key == "default":
            raise ValueError("'default' is a reserved alias")
        if not (isinstance(cls, type) and issubclass(cls, QueryStrategy)):
            raise TypeError("only QueryStrategy subclasses can be registered")
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not cls:
            raise ValueError(f"strategy {key!r} is already registered to {existing.__name__}")
        _REGISTRY[key] = cls
        return cls

    return deco


def available() -> tuple[str, ...]:
    """Registered names (sorted), without the ``"default"`` alias."""
    return tuple(sorted(_REGISTRY))


def get_strategy(name: str, **params: Any) -> QueryStrategy:
    """Instantiate a registered strategy with keyword settings.

    Raises:
        KeyError: unknown name (the message lists the valid names).
        TypeError: unknown parameter (the message lists the valid ones).
    """
    key = DEFAULT if name == "default" else name
    cls = _REGISTRY.get(key)
    if cls is None:
        valid = ", ".join(["default", *available()])
        raise KeyError(f"unknown selection strategy {name!r}; valid: {valid}")
    sig = inspect.signature(cls.__init__)
    valid_params = [p for p in sig.parameters if p != "self"]
    unknown = sorted(set(params) - set(valid_params))
    if unknown:
        raise TypeError(
            f"unknown parameter(s) {', '.join(unknown)} for strategy {key!r}; "
            f"valid: {', '.join(valid_params) or '(none)'}"
        )
    return cls(**params)


def _register_builtins() -> None:
    from selection.diversity import KCenterGreedy, KMeansDiversity, TypiClust
    from selection.hybrid import Hybrid
    from selection.uncertainty import Entropy, LeastConfidence, Margin, RandomSampling

    for cls in (
        RandomSampling,
        LeastConfidence,
        Margin,
        Entropy,
        KCenterGreedy,
        KMeansDiversity,
        TypiClust,
        Hybrid,
    ):
        register()(cls)


_register_builtins()
