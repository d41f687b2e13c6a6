"""Do a schedule's args fit its actor? Checked when the schedule is defined, not when a run starts (pure).

A run calls its actor with the schedule's args as keyword arguments (``actor.fn(**args)``), plus what the engine
adds: ``upstream`` (the upstream outputs, by schedule name) for a schedule that runs ``after`` others. Args the
function cannot take (``{"nosuchparam": 1}``), or a required parameter left out, would otherwise fail every run
with a ``TypeError`` in the worker, long after ``punchclock schedules add`` said yes. An actor taking
``**kwargs`` takes any name. Some actors also name a choice in their args: ``run_workflow`` a workflow of this
deployment, ``dify`` a Dify app of ``DIFY_APPS``; ``choices`` lists them, so a typo is refused here too.

``app/actors.py`` builds one :class:`ActorParams` per runnable actor from the Dramatiq actor's function
(``inspect.signature(actor.fn)``) and its options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidInput

# What the engine passes a run of a schedule with ``after`` besides its args (app/clock.py, app/dependencies.py).
UPSTREAM = "upstream"

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class ActorParams:
    """What one actor takes: its function's signature, the lock key template of its options (used when a
    schedule sets none), and, by parameter, the values it accepts when only some are (``workflow``)."""

    name: str
    signature: inspect.Signature
    lock_key: str | None = None
    choices: Mapping[str, Collection[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        name: str,
        fn: Callable[..., Any],
        options: Mapping[str, Any],
        choices: Mapping[str, Collection[str]] | None = None,
    ) -> ActorParams:
        lock_key = options.get("lock_key")
        return cls(name, inspect.signature(fn), lock_key if isinstance(lock_key, str) else None, choices or {})

    @property
    def parameters(self) -> list[str]:
        """The names a run may pass, in the function's order."""
        return [p.name for p in self.signature.parameters.values() if p.kind in _KEYWORD]

    @property
    def takes_any(self) -> bool:
        """True when the function has ``**kwargs``."""
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self.signature.parameters.values())

    def check(self, args: Mapping[str, Any], *, engine_args: Collection[str] = ()) -> None:
        """Raise :class:`InvalidInput` naming the parameter when a run with keyword arguments ``args`` plus
        ``engine_args`` (names the engine fills in) could not call this actor, or names an unknown choice."""
        for name in args:
            if name not in self.parameters and not self.takes_any:
                raise InvalidInput(
                    f'actor "{self.name}" has no parameter "{name}": {self._takes()}; remove "{name}" from the args'
                )
        for name in engine_args:
            if name not in self.parameters and not self.takes_any:
                raise InvalidInput(
                    f'its runs receive "{name}" from the engine, but actor "{self.name}" has no parameter "{name}":'
                    f" add {name}=None to the actor's function (or **kwargs)"
                )
        given = set(args) | set(engine_args)
        for parameter in self.signature.parameters.values():
            if parameter.default is not inspect.Parameter.empty or parameter.name in given:
                continue
            if parameter.kind in _KEYWORD:
                raise InvalidInput(
                    f'actor "{self.name}" needs the parameter "{parameter.name}": add it to the args'
                    f' (e.g. {{"{parameter.name}": ...}})'
                )
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise InvalidInput(
                    f'actor "{self.name}" needs the positional-only parameter "{parameter.name}", which a run'
                    " cannot pass (runs pass keyword arguments): make it a keyword parameter"
                )
        for name, allowed in self.choices.items():
            if name in args and args[name] not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise InvalidInput(
                    f'actor "{self.name}" has no {name} {_shown(args[name])}: this deployment has {known}'
                )
        # The last word is Python's own: whatever the checks above missed, binding the call finds.
        try:
            self.signature.bind(**{name: None for name in given})
        except TypeError as exc:
            raise InvalidInput(f'args do not fit actor "{self.name}": {exc}') from None

    def _takes(self) -> str:
        return f"it takes {', '.join(self.parameters)}" if self.parameters else "it takes no arguments"


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else f"{value!r} (not a name)"


# What a schedule may target: actor names only (args unchecked: tests, tools), or each actor's parameters.
KnownActors = Collection[str] | Mapping[str, ActorParams]
