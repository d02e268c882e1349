"""Slotted classes that behave as ``@dataclass(slots=True)`` ones (``frozen=True`` too): the
same ``repr``, ``==``, ``hash``, ``__match_args__`` and frozen-assignment errors.

Why not ``@dataclass``: it writes those methods as source text and compiles them at every
import, 0.3-0.7 ms per class; the proxy made 26 before its first answer, ~20 ms of its start-up
(issue 16, measured). Here a subclass annotates its fields (their order is the field order),
lists the same names in ``__slots__`` and writes its own ``__init__``; the rest is generic.
``derived`` names the fields its ``__init__`` computes (a dataclass's ``field(init=False,
repr=False, compare=False)``): not in the repr, not compared, not hashed, not matched.
tests/shared/test_slotclass.py holds every such class against a dataclass of the same fields.
"""

from __future__ import annotations

import operator
import reprlib
from collections.abc import Callable
from dataclasses import FrozenInstanceError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar

_set = object.__setattr__


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A tuple of the named attributes, as the dataclass methods build it (even for one)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        name = names[0]
        return lambda self: (getattr(self, name),)
    return lambda self: ()


def _own_annotations(cls: type) -> dict[str, Any]:
    """``inspect.get_annotations(cls)`` (the class's own, never a parent's) without inspect's
    code, which aip-proxy runs only when something needs it (aip.proxy.lean.defer_modules:
    with ast, dis and tokenize ~7 ms of its start)."""
    own = cls.__dict__.get("__annotations__")  # noqa: RUF063 - what get_annotations reads
    if own is None and "__annotate__" in cls.__dict__:  # Python 3.14: built on demand
        import inspect

        return inspect.get_annotations(cls)
    return dict(own) if isinstance(own, dict) else {}


class Slotted:
    """``@dataclass(slots=True)``: compared by value, unhashable (as a dataclass with ``eq``
    and without ``frozen``)."""

    __slots__ = ()
    _all: ClassVar[tuple[str, ...]] = ()  # every field, in order
    _fields: ClassVar[tuple[str, ...]] = ()  # shown and compared, in order
    _values: ClassVar[staticmethod[[Any], tuple[Any, ...]]]

    def __init_subclass__(cls, derived: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Field order is the annotations' order, as for a dataclass (``__slots__`` may be sorted).
        names = tuple(_own_annotations(cls))
        if not names and "__slots__" not in cls.__dict__:
            return  # a subclass adding no fields keeps its parent's, as a dataclass's would
        if set(names) != set(cls.__dict__.get("__slots__", ())):
            raise TypeError(f"{cls.__qualname__}: __slots__ must list exactly its annotated fields")
        cls._all = names
        cls._fields = tuple(name for name in names if name not in derived)
        cls._values = staticmethod(_getter(cls._fields))
        cls.__match_args__ = cls._fields  # type: ignore[attr-defined,misc]

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values(self) == self._values(other)
        return NotImplemented

    __hash__: ClassVar[None] = None  # type: ignore[assignment]


class FrozenSlotted(Slotted):
    """``@dataclass(frozen=True, slots=True)``: hashable by its compared fields; assigning or
    deleting an attribute raises ``FrozenInstanceError``. ``__init__`` sets fields with
    ``object.__setattr__`` (``slotclass.init``)."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._values(self))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    # As a frozen slotted dataclass pickles (its own __setattr__ refuses the default way).
    def __getstate__(self) -> list[Any]:
        return [getattr(self, name) for name in self._all]

    def __setstate__(self, state: list[Any]) -> None:
        for name, value in zip(self._all, state, strict=False):
            _set(self, name, value)


init = _set  # ``slotclass.init(self, "name", value)`` in a frozen class's ``__init__``

if TYPE_CHECKING:  # for the type checker only: typing stays out of start-up
    _S = TypeVar("_S", bound=Slotted)


def replace(obj: _S, /, **changes: Any) -> _S:
    """``dataclasses.replace``: a new object from ``obj``'s init fields and ``changes``."""
    for name in changes:
        if name in obj._all and name not in obj._fields:
            raise ValueError(
                f"field {name} is declared with init=False, it cannot be specified with replace()"
            )
    args = {name: getattr(obj, name) for name in obj._fields}
    args.update(changes)  # a name that is no field: the class's own TypeError
    return obj.__class__(**args)
