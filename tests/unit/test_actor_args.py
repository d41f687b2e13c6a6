"""Args checked against the actor's function when a schedule is defined (app/actor_args.py, app/schedule.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from app.actor_args import ActorParams
from app.boot import load_code_schedules
from app.errors import ConfigurationError, InvalidInput
from app.schedule import Schedule


def probe(seconds: float = 0, output: Any = None, upstream: dict[str, Any] | None = None) -> Any:
    return output


def brief(day: str, *, tone: str = "plain") -> str:
    return day


def run_workflow(workflow: str, **params: Any) -> Any:
    return params


def strict(seconds: float = 0) -> None:
    return None


def reindex(kb: str = "docs") -> None:
    return None


ACTORS = {
    "probe": ActorParams.of("probe", probe, {}),
    "brief": ActorParams.of("brief", brief, {"lock_key": "brief:{day}"}),
    "run_workflow": ActorParams.of("run_workflow", run_workflow, {}, {"workflow": {"daily_brief", "dify"}}),
    "strict": ActorParams.of("strict", strict, {}),
    "reindex": ActorParams.of("reindex", reindex, {"lock_key": "reindex:{kb}"}),
}


def refused(schedule: Schedule) -> str:
    with pytest.raises(InvalidInput) as caught:
        schedule.validated(ACTORS)
    return str(caught.value)


def test_an_arg_the_actor_does_not_take_is_refused_naming_it() -> None:
    message = refused(Schedule("a", "probe", "* * * * *", args={"nosuchparam": 1}))
    assert message == (
        'args of schedule "a" do not fit: actor "probe" has no parameter "nosuchparam": it takes seconds, output,'
        ' upstream; remove "nosuchparam" from the args'
    )


def test_a_required_parameter_left_out_is_refused_naming_it() -> None:
    message = refused(Schedule("a", "brief", "* * * * *", args={"tone": "warm"}))
    assert message == (
        'args of schedule "a" do not fit: actor "brief" needs the parameter "day": add it to the args'
        ' (e.g. {"day": ...})'
    )
    message = refused(Schedule("a", "run_workflow", "* * * * *"))
    assert 'actor "run_workflow" needs the parameter "workflow"' in message


def test_an_actor_taking_kwargs_takes_any_name_but_only_known_workflows() -> None:
    args = {"workflow": "daily_brief", "source": "http://x", "anything": [1]}
    assert Schedule("a", "run_workflow", "* * * * *", args=args).validated(ACTORS).args == args
    message = refused(Schedule("a", "run_workflow", "* * * * *", args={"workflow": "daily_breif"}))
    assert message == (
        'args of schedule "a" do not fit: actor "run_workflow" has no workflow "daily_breif": this deployment has'
        " daily_brief, dify"
    )
    assert "has no workflow 7 (not a name)" in refused(Schedule("a", "run_workflow", "* * * * *", args={"workflow": 7}))


def test_upstream_is_the_engines_for_a_schedule_with_after() -> None:
    """A dependent run receives ``upstream`` from the engine: its actor must take it, and its args must not set it."""
    assert Schedule("b", "probe", None, after=("a",)).validated(ACTORS).after == ("a",)
    message = refused(Schedule("b", "strict", None, after=("a",)))
    assert message == (
        'args of schedule "b" do not fit: its runs receive "upstream" from the engine, but actor "strict" has no'
        ' parameter "upstream": add upstream=None to the actor\'s function (or **kwargs)'
    )
    message = refused(Schedule("b", "probe", None, after=("a",), args={"upstream": {}}))
    assert 'args of schedule "b" set "upstream", which the engine sets for a schedule with after' in message
    # without after, upstream is an ordinary parameter of probe
    assert Schedule("c", "probe", "* * * * *", args={"upstream": {}}).validated(ACTORS).args == {"upstream": {}}


def test_a_lock_key_must_name_the_args() -> None:
    """The lease is filled from the run's args before the actor runs: a default value never fills a field."""
    message = refused(Schedule("a", "probe", "* * * * *", lock_key="reindex:{kb}", args={"seconds": 1}))
    assert message == (
        'lock_key "reindex:{kb}" names "kb", which the args of schedule "a" lack (they have seconds): add "kb" to'
        " the args or change the lock key; a lock key is filled from the run's args, never from the actor's default"
        " values"
    )
    # the same check without the actor's parameters: it needs only the schedule
    with pytest.raises(InvalidInput, match='names "kb", which the args of schedule "a" lack'):
        Schedule("a", "probe", "* * * * *", lock_key="reindex:{kb}").validated({"probe"})
    # the actor's own lock key, when the schedule sets none; kb's default does not fill it
    message = refused(Schedule("a", "reindex", "* * * * *"))
    assert message.startswith('lock_key "reindex:{kb}" of actor "reindex" names "kb", which the args of schedule "a"')
    assert Schedule("a", "reindex", "* * * * *", args={"kb": "faq"}).validated(ACTORS).args == {"kb": "faq"}
    # overlap allow takes no lease: no key is filled
    assert Schedule("a", "strict", "* * * * *", lock_key="{kb}", overlap="allow").validated(ACTORS).lock_key == "{kb}"


def test_a_manual_runs_args_are_checked_without_the_engines() -> None:
    schedule = Schedule("b", "probe", None, after=("a",)).validated(ACTORS)
    schedule.check_args({"upstream": {"a": 1}}, ACTORS["probe"], overlap=schedule.overlap)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match='actor "probe" has no parameter "nosuchparam"'):
        schedule.check_args({"nosuchparam": 1}, ACTORS["probe"], overlap=schedule.overlap)  # type: ignore[arg-type]


def test_schedules_py_with_args_that_do_not_fit_stops_the_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad_args_schedules.py").write_text(
        "from app.schedule import Schedule\n"
        'SCHEDULES = [Schedule("nightly", "probe", "0 2 * * *", args={"nosuchparam": 1})]\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_args_schedules", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        load_code_schedules("bad_args_schedules", ACTORS)
    assert str(caught.value).startswith(
        'bad_args_schedules.py: args of schedule "nightly" do not fit: actor "probe" has no parameter "nosuchparam"'
    )
