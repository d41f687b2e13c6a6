"""Reading a user's choice among an enum's values (misfire and overlap policies), with one wording of the
error: ``invalid misfire policy "newest": use one of skip, latest, all``."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from app.errors import InvalidInput

E = TypeVar("E", bound=StrEnum)


def parse_choice(kind: type[E], text: str, what: str) -> E:
    """``text`` (case and surrounding whitespace ignored) as a member of ``kind``, or :class:`InvalidInput`."""
    try:
        return kind(text.strip().lower())
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidInput(f'invalid {what} "{text}": use one of {choices}') from None
