"""The gate of a schedule with both a cron and ``after``: hand-written upstream states, ``now`` passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.upstream_gate import Gate, UpstreamRun, Verdict, gate

T = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def verdict(*upstreams: UpstreamRun, now: datetime = T) -> Gate:
    return gate(upstreams, instant=T, now=now, patience=HOUR)


def test_fires_with_every_upstream_output_when_all_succeeded() -> None:
    result = verdict(UpstreamRun("load", 7, "succeeded", {"rows": 3}), UpstreamRun("fx", 9, "succeeded", 1.1))
    assert result == Gate(Verdict.FIRE, upstream={"load": {"rows": 3}, "fx": 1.1})


def test_waits_for_an_upstream_in_flight_until_the_catchup_window_runs_out() -> None:
    running = UpstreamRun("load", 7, "running")
    assert verdict(running, UpstreamRun("fx", 9, "succeeded")) == Gate(Verdict.WAIT, blocked_by=7)
    assert verdict(running, now=T + HOUR).verdict is Verdict.WAIT
    late = verdict(running, now=T + HOUR + timedelta(seconds=1))
    assert (late.verdict, late.blocked_by) == (Verdict.SKIP, 7)
    assert (
        late.reason
        == 'skipped: upstream "load" run 7 still running after waiting 1:00:00 (the schedule\'s catchup_window)'
    )


def test_skips_naming_a_failed_upstream_even_when_another_is_still_running() -> None:
    result = verdict(UpstreamRun("load", 7, "running"), UpstreamRun("fx", 9, "timed_out"))
    assert result == Gate(Verdict.SKIP, 'skipped: upstream "fx" run 9 timed out', blocked_by=9)


def test_skips_when_an_upstream_never_ran() -> None:
    result = verdict(UpstreamRun("load", None, None))
    assert result.verdict is Verdict.SKIP and result.blocked_by is None
    assert result.reason == 'skipped: upstream "load" has no run at or before 2026-11-30 06:00'
