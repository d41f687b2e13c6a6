"""Lock key templates: what a schedule may declare, and the key a run's arguments fill in (pure)."""

from __future__ import annotations

import re

import pytest

from app.errors import InvalidInput
from app.overlap import MAX_KEY_LENGTH, MAX_TEMPLATE_LENGTH, Lease, Overlap, resolve_lease, validate_lock_key

HOW = 'write plain {name} fields naming keyword arguments, like "reindex:{kb}"'


@pytest.mark.parametrize("template", ["reindex:{kb}", "{kb}", "{tenant}:{kb}", "{{literal}}:{kb}", "fixed", "{_kb}"])
def test_plain_fields_are_accepted(template: str) -> None:
    assert validate_lock_key(template) == template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{seconds:>20000000}", 'field "{seconds:>20000000}" has a format spec'),
        ("x:{kb:{width}}", 'field "{kb:{width}}" has a format spec'),
        ("x:{kb!r}", 'field "{kb!r}" has a conversion'),
        ("x:{__class__}", 'field "{__class__}" is a dunder name, not an argument'),
        (
            "x:{kb.__class__}",
            'field "{kb.__class__}" is not the name of a keyword argument (no positions, attributes or indexes)',
        ),
        ("x:{kb[0]}", 'field "{kb[0]}" is not the name of a keyword argument (no positions, attributes or indexes)'),
        ("x:{}", 'field "{}" is not the name of a keyword argument (no positions, attributes or indexes)'),
        ("x:{0}", 'field "{0}" is not the name of a keyword argument (no positions, attributes or indexes)'),
        ("x:{kb", "expected '}' before end of string"),
    ],
)
def test_anything_but_plain_fields_is_refused(template: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_lock_key(template)
    assert str(caught.value) == f'invalid lock_key "{template}": {message}; {HOW}'


def test_a_template_is_at_most_200_characters() -> None:
    longest = "k" * (MAX_TEMPLATE_LENGTH - 4) + "{kb}"
    assert validate_lock_key(longest) == longest
    with pytest.raises(InvalidInput) as caught:
        validate_lock_key("k" + longest)
    assert str(caught.value) == f'invalid lock_key "{"k" * 40}…": 201 characters, more than 200; {HOW}'


def test_an_empty_template_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid lock_key: empty; leave it unset to lock per schedule"):
        validate_lock_key("  ")


SCHEDULED = {"schedule_id": 7, "overlap": "skip"}


def test_a_lease_is_the_schedules_unless_a_lock_key_names_another() -> None:
    assert resolve_lease(SCHEDULED, None, {"kb": "docs"}) == Lease("schedule:7", Overlap.SKIP)
    assert resolve_lease({**SCHEDULED, "lock_key": "reindex:{kb}"}, None, {"kb": "docs"}) == Lease(
        "reindex:docs", Overlap.SKIP
    )
    assert resolve_lease(SCHEDULED, "actor:{kb}", {"kb": "docs"}) == Lease("actor:docs", Overlap.SKIP)
    assert resolve_lease({**SCHEDULED, "overlap": "allow", "lock_key": "{kb}"}, None, {}) == Lease(None, Overlap.ALLOW)


def test_a_lock_key_naming_a_missing_argument_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve_lease({**SCHEDULED, "lock_key": "reindex:{kb}"}, None, {"seconds": 1})
    assert (
        str(caught.value)
        == "lock_key \"reindex:{kb}\" cannot be filled from the run's arguments ['seconds']: missing 'kb'"
    )


def test_the_filled_key_is_bounded_whatever_the_arguments_hold() -> None:
    options = {**SCHEDULED, "lock_key": "reindex:{kb}"}
    fits = "d" * (MAX_KEY_LENGTH - len("reindex:"))
    assert resolve_lease(options, None, {"kb": fits}).key == f"reindex:{fits}"
    with pytest.raises(InvalidInput) as caught:
        resolve_lease(options, None, {"kb": fits + "d"})
    assert str(caught.value).startswith(
        'lock_key "reindex:{kb}" filled from the run\'s arguments is 513 characters long, more than 512:'
    )
    with pytest.raises(InvalidInput, match="is 1,000,008 characters long"):
        resolve_lease(options, None, {"kb": ["x"] * 200_000})  # not a string: its str() is what counts


@pytest.mark.parametrize("template", ["{kb:>20000000}", "{kb.__class__}", "{kb!r}"])
def test_templates_never_validated_are_checked_when_a_run_starts(template: str) -> None:
    """An actor's lock_key option, or a run recorded before templates were checked, fails the run instead."""
    with pytest.raises(InvalidInput, match=re.escape(f'invalid lock_key "{template}": field')):
        resolve_lease(SCHEDULED, template, {"kb": "docs"})
    with pytest.raises(InvalidInput, match="invalid lock_key"):
        resolve_lease({**SCHEDULED, "lock_key": template}, None, {"kb": "docs"})
