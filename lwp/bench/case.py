"""What a benchmark case is: a name, what it measures, and one function per library.

A :class:`Case` is declarative: it holds no timing logic. Each library's
implementation is a plain function, registered with :meth:`Case.impl`, that
the harness calls inside a fresh subprocess with the case's parameters as
keyword arguments, and that returns the measured number(s) in the case's unit:

* a number: one sample;
* a list of numbers: for a case declared with ``tail=True``, one value per
  operation (the harness keeps their mean as the sample and their p99);
  otherwise each element is a sample of its own.

Implementations import their library inside the function, so that loading
the case list never imports a peer, and a missing peer is found by
:func:`importlib.util.find_spec` on ``requires`` before any subprocess runs.

Every case module is listed in :data:`GROUPS`; :func:`all_cases` imports them
in that order, which is the order of ``--list`` and of the report.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Modules of ``lwp.bench`` that declare cases, in report order.
GROUPS = ("cases_spawn", "cases_handoff", "cases_memory", "cases_blocking", "servers")

_registry: dict[str, Case] = {}


@dataclass(frozen=True)
class Impl:
    """One library's implementation of a case.

    ``label`` names the row in the report and the key in the JSON (unique
    within a case); ``library`` is what ``--libs`` filters on; ``requires``
    lists the top-level modules that must be importable, else the row reads
    "not installed"; ``kwargs`` are fixed arguments merged over the case's
    parameters (for variants such as ``lwps=1``); ``note`` is printed under
    the table when the implementation departs from the plain comparison.
    """

    label: str
    library: str
    fn: Callable[..., Any]
    requires: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Case:
    """A benchmark case; constructing one registers it under ``name``.

    ``params`` are the full-run sizes and ``quick`` the ``--quick`` ones
    (same keys). ``unit`` is what every implementation returns, e.g.
    ``"us/op"``. ``better`` says which direction wins, ``"lower"`` for costs
    and ``"higher"`` for rates, so the ratio column (peer / baseline) can be
    read correctly. ``baseline`` is the implementation the ratios are taken
    against. ``register=False`` keeps the case out of the command (for
    tests of the harness).
    """

    name: str
    description: str
    unit: str
    params: dict[str, Any]
    quick: dict[str, Any]
    tail: bool = False
    better: str = "lower"
    baseline: str = "lwp"
    impls: dict[str, Impl] = field(default_factory=dict)
    register: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        if self.register and self.name in _registry:
            raise ValueError(f"benchmark case {self.name!r} declared twice")
        if set(self.params) != set(self.quick):
            raise ValueError(f"case {self.name!r}: params and quick differ in keys")
        if self.better not in ("lower", "higher"):
            raise ValueError(f"case {self.name!r}: better must be 'lower' or 'higher'")
        if self.register:
            _registry[self.name] = self

    def impl(
        self,
        label: str,
        *,
        library: str | None = None,
        requires: str | tuple[str, ...] = (),
        note: str = "",
        **kwargs: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``fn`` as the implementation ``label``.

        ``library`` defaults to ``label``. The decorated function is returned
        unchanged, so one function may be registered twice with different
        ``kwargs``.
        """
        if isinstance(requires, str):
            requires = (requires,)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            if label in self.impls:
                raise ValueError(f"case {self.name!r}: implementation {label!r} declared twice")
            self.impls[label] = Impl(label, library or label, fn, tuple(requires), kwargs, note)
            return fn

        return register

    def sizes(self, quick: bool) -> dict[str, Any]:
        """The parameters for a full or a ``--quick`` run."""
        return dict(self.quick if quick else self.params)


def all_cases() -> dict[str, Case]:
    """Every declared case, by name, in :data:`GROUPS` order."""
    for group in GROUPS:
        importlib.import_module(f"{__package__}.{group}")
    return dict(_registry)
