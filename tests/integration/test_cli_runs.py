"""``schedules backfill``, ``runs cancel``, ``runs retry``, ``runs show``'s attempts and notifications, and
``punchclock stats``, against the real PostgreSQL (a fresh database per test) and the real RabbitMQ."""

from __future__ import annotations

import asyncio
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.conftest import drain_queue
from tests.integration.test_cli import QUEUE, cli, run_id_printed, wiring

if TYPE_CHECKING:
    Pool = asyncpg.Pool[Any]

__all__ = ["wiring"]  # the module fixture that imports app.actors with the tests' settings


async def add_hourly(*extra: str) -> None:
    assert await cli("schedules", "add", "hourly", "--actor", "probe", "--cron", "0 * * * *", *extra) == 0


async def run_count(pool: Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM runs")
    return count


async def insert_run(pool: Pool, state: str, **columns: Any) -> int:
    """A run of the schedule "hourly" in ``state``, with any other columns given."""
    names = ["state", *columns]
    values = [state, *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    run_id: int = await pool.fetchval(
        f"INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, {', '.join(names)})"
        f" SELECT id, name, actor, now(), 'cron', {placeholders} FROM schedules WHERE name = 'hourly' RETURNING id",
        *values,
    )
    return run_id


# backfill -------------------------------------------------------------------------------------------------


async def test_backfill_makes_one_run_per_instant_in_order(
    punchclock_env: dict[str, str], pool: Pool, clean_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly("--args", '{"seconds": 0}', "--max-retries", "1")
    capsys.readouterr()

    code = await cli("schedules", "backfill", "hourly", "--from", "2026-03-01T00:00", "--to", "2026-03-01T05:00Z")
    assert code == 0
    rows = await pool.fetch("SELECT * FROM runs ORDER BY id")
    ids = [row["id"] for row in rows]
    assert capsys.readouterr().out == (
        f'6 backfill runs of "hourly" (probe, ids {ids[0]} to {ids[-1]}) enqueued:'
        " first 2026-03-01T00:00:00Z, last 2026-03-01T05:00:00Z\n"
    )
    hours = [datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in range(6)]
    assert [row["scheduled_for"] for row in rows] == hours
    assert {(row["trigger"], row["state"]) for row in rows} == {("backfill", "enqueued")}
    assert all(row["args"] == {"seconds": 0} for row in rows)
    assert all(row["options"]["max_retries"] == 1 and row["options"]["overlap"] == "skip" for row in rows)

    messages = await asyncio.to_thread(drain_queue, clean_queues, QUEUE)
    assert [m["options"]["run_id"] for m in messages] == ids
    assert {m["actor_name"] for m in messages} == {"probe"}
    assert all(m["kwargs"] == {"seconds": 0} and m["options"]["max_retries"] == 1 for m in messages)


async def test_backfill_reads_naive_times_in_the_schedule_zone(
    punchclock_env: dict[str, str], pool: Pool, clean_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """New York's spring-forward night: 02:00 does not exist, so 00:00-04:00 local has four hourly instants."""
    await add_hourly("--tz", "America/New_York")
    capsys.readouterr()

    assert await cli("schedules", "backfill", "hourly", "--from", "2026-03-08T00:00", "--to", "2026-03-08T04:00") == 0
    assert capsys.readouterr().out.endswith("first 2026-03-08T00:00:00-05:00, last 2026-03-08T04:00:00-04:00\n")
    instants = [row["scheduled_for"] for row in await pool.fetch("SELECT scheduled_for FROM runs ORDER BY id")]
    assert instants == [datetime(2026, 3, 8, hour, tzinfo=UTC) for hour in (5, 6, 7, 8)]


async def test_backfill_over_1000_instants_needs_yes(
    punchclock_env: dict[str, str], pool: Pool, clean_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    capsys.readouterr()
    span = ("--from", "2026-01-01T00:00Z", "--to", "2026-02-12T16:00Z")  # 42 days and 17 hours: 1,025 instants

    assert await cli("schedules", "backfill", "hourly", *span) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        'punchclock: error: backfill of "hourly" from 2026-01-01T00:00:00Z to 2026-02-12T16:00:00Z would'
        " make 1,025 runs, more than 1,000: pass --yes to make them all, or narrow --from/--to\n"
    )
    assert await run_count(pool) == 0

    assert await cli("schedules", "backfill", "hourly", *span, "--yes") == 0
    assert capsys.readouterr().out.startswith('1025 backfill runs of "hourly"')
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE trigger = 'backfill' AND state = 'enqueued'") == 1025
    messages = await asyncio.to_thread(drain_queue, clean_queues, QUEUE)
    ids = [row["id"] for row in await pool.fetch("SELECT id FROM runs ORDER BY scheduled_for")]
    assert [m["options"]["run_id"] for m in messages] == ids == sorted(ids)


@pytest.mark.parametrize(
    ("span", "message"),
    [
        (
            ("2026-03-01T00:10Z", "2026-03-01T00:50Z"),
            'schedule "hourly" ("0 * * * *", UTC) has no instant from 2026-03-01T00:10:00Z to'
            " 2026-03-01T00:50:00Z: nothing to backfill; widen --from/--to",
        ),
        (("2026-03-02T00:00", "2026-03-01T00:00"), "--from 2026-03-02T00:00 is after --to 2026-03-01T00:00: swap them"),
        (("yesterday", "2026-03-01T00:00"), "invalid --from 'yesterday': use ISO 8601"),
    ],
)
async def test_backfill_refuses_an_empty_or_bad_range(
    punchclock_env: dict[str, str],
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
    span: tuple[str, str],
    message: str,
) -> None:
    await add_hourly()
    capsys.readouterr()
    assert await cli("schedules", "backfill", "hourly", "--from", span[0], "--to", span[1]) == 2
    assert capsys.readouterr().err.startswith(f"punchclock: error: {message}")
    assert await run_count(pool) == 0


async def test_backfill_of_a_schedule_without_cron(
    punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    assert await cli("schedules", "add", "after-hourly", "--actor", "probe", "--after", "hourly") == 0
    capsys.readouterr()
    code = await cli("schedules", "backfill", "after-hourly", "--from", "2026-03-01T00:00", "--to", "2026-03-02T00:00")
    assert code == 2
    assert 'schedule "after-hourly" has no cron (it runs after hourly)' in capsys.readouterr().err


# cancel ---------------------------------------------------------------------------------------------------


async def test_cancel_a_run_not_started(
    punchclock_env: dict[str, str], pool: Pool, clean_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    assert await cli("schedules", "trigger", "hourly") == 0
    queued = run_id_printed(capsys.readouterr().out)
    scheduled = await insert_run(pool, "scheduled")
    retrying = await insert_run(pool, "retrying", next_attempt_at=datetime.now(UTC) + timedelta(minutes=1))

    for run_id in (queued, scheduled, retrying):
        assert await cli("runs", "cancel", str(run_id)) == 0
        assert capsys.readouterr().out == f'cancelled run {run_id} of "hourly": it will not start\n'
    rows = await pool.fetch("SELECT * FROM runs ORDER BY id")
    assert [row["id"] for row in rows] == [queued, scheduled, retrying]
    for row in rows:
        assert (row["state"], row["error"], row["next_attempt_at"]) == (
            "cancelled",
            "cancelled by punchclock runs cancel",
            None,
        )
        assert row["finished_at"] is not None

    assert await cli("runs", "cancel", str(queued)) == 2
    assert capsys.readouterr().err == (
        f"punchclock: error: run {queued} is already cancelled: there is nothing to cancel\n"
    )
    assert await cli("runs", "show", str(queued)) == 0
    out = capsys.readouterr().out
    assert "state:          cancelled\n" in out
    assert "cancel:" not in out  # no "cancel: -" next to a run that was cancelled


class Terminal(io.StringIO):
    """stdin as a person at a terminal answers: ``answers``, one a line."""

    def isatty(self) -> bool:
        return True


class Script(io.StringIO):
    def isatty(self) -> bool:
        return False


async def states_by_id(pool: Pool) -> dict[int, str]:
    return {row["id"]: row["state"] for row in await pool.fetch("SELECT id, state FROM runs")}


async def test_cancel_the_pending_runs_of_a_schedule(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_hourly()
    assert await cli("schedules", "add", "other", "--actor", "probe", "--cron", "0 * * * *") == 0
    scheduled = [await insert_run(pool, "scheduled") for _ in range(2)]
    enqueued = await insert_run(pool, "enqueued")
    retrying = await insert_run(pool, "retrying", next_attempt_at=datetime.now(UTC) + timedelta(minutes=1))
    running = await insert_run(
        pool, "running", attempts=1, started_at=datetime.now(UTC), alive_until=datetime.now(UTC) + timedelta(hours=1)
    )
    done = await insert_run(pool, "succeeded", finished_at=datetime.now(UTC))
    other = await pool.fetchval(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
        " SELECT id, name, actor, now(), 'cron', 'scheduled' FROM schedules WHERE name = 'other' RETURNING id"
    )
    before = await states_by_id(pool)
    capsys.readouterr()

    # bad input, or a script without --yes: exit 2, nothing cancelled
    monkeypatch.setattr("sys.stdin", Script(""))
    for argv, error in (
        (["--schedule", "hourly"], "runs cancel --schedule hourly cancels runs in bulk: pass --yes to confirm"),
        (["--schedule", "hourly", "--yes", "--state", "succeeded"], "invalid --state succeeded: a succeeded run"),
        (["--schedule", "hourly", "--yes", "--state", "bogus"], 'unknown run state "bogus"'),
        (["--schedule", "nobody", "--yes"], 'no schedule named "nobody" and no runs of one'),
        ([str(running), "--schedule", "hourly"], f"pass RUN_ID {running} or --schedule hourly, not both"),
        ([], "pass the RUN_ID of the run to cancel, or --schedule NAME"),
        ([str(running), "--yes"], f"--state and --yes go with --schedule NAME, not with RUN_ID {running}"),
    ):
        assert await cli("runs", "cancel", *argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.err.startswith(f"punchclock: error: {error}"), (argv, captured.err)
        assert captured.out == ""
    assert await states_by_id(pool) == before

    # a person says no
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert await cli("runs", "cancel", "--schedule", "hourly") == 0
    captured = capsys.readouterr()
    assert captured.err == (
        'cancel 4 runs not started yet and 1 running of "hourly" (scheduled, enqueued, retrying, running)? [y/N] '
    )
    assert captured.out == "nothing cancelled\n"
    assert await states_by_id(pool) == before

    # --state narrows, --yes does not ask
    assert await cli("runs", "cancel", "--schedule", "hourly", "--state", "scheduled", "--yes") == 0
    assert capsys.readouterr() == ('cancelled 2 runs of "hourly"\n', "")
    assert [(await states_by_id(pool))[run_id] for run_id in scheduled] == ["cancelled", "cancelled"]

    # a person says yes: the rest, the running one asked to stop
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert await cli("runs", "cancel", "--schedule", "hourly") == 0
    assert capsys.readouterr().out == (
        'cancelled 2 runs of "hourly"; asked 1 running run to stop: its worker stops it and marks it cancelled'
        " within a heartbeat\n"
    )
    after = await states_by_id(pool)
    assert (after[enqueued], after[retrying], after[running], after[done], after[other]) == (
        "cancelled",
        "cancelled",
        "running",
        "succeeded",
        "scheduled",
    )
    assert await pool.fetchval("SELECT cancel_requested FROM runs WHERE id = $1", running) is True

    assert await cli("runs", "cancel", "--schedule", "hourly", "--state", "scheduled", "enqueued", "--yes") == 0
    assert capsys.readouterr().out == 'no runs of "hourly" (scheduled, enqueued) to cancel\n'


async def test_delete_or_pause_says_what_becomes_of_pending_runs(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_hourly()
    pending = [await insert_run(pool, "scheduled") for _ in range(3)]
    running = await insert_run(
        pool, "running", attempts=1, started_at=datetime.now(UTC), alive_until=datetime.now(UTC) + timedelta(hours=1)
    )
    capsys.readouterr()

    monkeypatch.setattr("sys.stdin", Script(""))  # a script: told, not asked; its runs still run
    assert await cli("schedules", "pause", "hourly") == 0
    assert capsys.readouterr() == (
        'paused schedule "hourly" (resume with punchclock schedules resume hourly)\n'
        "its 3 runs not started yet and 1 running still run (pausing stops new runs only); cancel them with"
        " punchclock runs cancel --schedule hourly\n",
        "",
    )
    assert set((await states_by_id(pool)).values()) == {"scheduled", "running"}

    assert await cli("schedules", "resume", "hourly") == 0
    assert await cli("schedules", "pause", "hourly", "--cancel-pending") == 0
    assert capsys.readouterr().out.endswith(
        'paused schedule "hourly" (resume with punchclock schedules resume hourly)\n'
        'cancelled 3 runs of "hourly"; asked 1 running run to stop: its worker stops it and marks it cancelled'
        " within a heartbeat\n"
    )
    assert [(await states_by_id(pool))[run_id] for run_id in pending] == ["cancelled"] * 3

    late = await insert_run(pool, "enqueued")
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))  # a person: asked
    assert await cli("schedules", "delete", "hourly") == 0
    captured = capsys.readouterr()
    assert captured.err == 'schedule "hourly" has 1 run not started yet and 1 running: cancel them? [y/N] '
    assert captured.out == (
        'deleted schedule "hourly"; its runs keep their history (punchclock runs list --schedule hourly)\n'
        'cancelled 1 run of "hourly"; asked 1 running run to stop: its worker stops it and marks it cancelled'
        " within a heartbeat\n"
    )
    assert (await states_by_id(pool))[late] == "cancelled"
    assert await pool.fetchval("SELECT cancel_requested FROM runs WHERE id = $1", running) is True
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 0


async def test_cancel_a_running_run_asks_it_to_stop(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    running = await insert_run(pool, "running", started_at=datetime.now(UTC), attempts=1)
    capsys.readouterr()

    assert await cli("runs", "cancel", str(running)) == 0
    assert capsys.readouterr().out == (
        f'asked run {running} of "hourly" to stop: its worker stops it and marks it cancelled within a heartbeat\n'
    )
    row = await pool.fetchrow("SELECT state, cancel_requested, finished_at, error FROM runs WHERE id = $1", running)
    assert row is not None
    assert tuple(row) == ("running", True, None, None)
    assert await cli("runs", "show", str(running)) == 0
    assert "cancel:         requested: its worker stops it within a heartbeat\n" in capsys.readouterr().out


@pytest.mark.parametrize("state", ["succeeded", "failed", "timed_out", "skipped", "missed"])
async def test_cancel_a_finished_run_is_refused(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    await add_hourly()
    run_id = await insert_run(pool, state, finished_at=datetime.now(UTC))
    before = await pool.fetchrow("SELECT * FROM runs")
    capsys.readouterr()

    assert await cli("runs", "cancel", str(run_id)) == 2
    assert capsys.readouterr().err == (
        f"punchclock: error: run {run_id} is already {state}: there is nothing to cancel\n"
    )
    assert await pool.fetchrow("SELECT * FROM runs") == before
    assert await cli("runs", "cancel", "999999") == 2
    assert capsys.readouterr().err == "punchclock: error: no run with id 999999: see punchclock runs list\n"


# retry ----------------------------------------------------------------------------------------------------


async def test_retry_makes_a_new_manual_run_with_the_same_args(
    punchclock_env: dict[str, str], pool: Pool, clean_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    options = {"max_retries": 0, "time_limit": 60_000, "overlap": "allow", "lock_key": "kb:{kb}"}
    failed = await insert_run(
        pool, "failed", args={"kb": "docs", "seconds": 1}, options=options, error="boom", finished_at=datetime.now(UTC)
    )
    capsys.readouterr()

    assert await cli("runs", "retry", str(failed)) == 0
    out = capsys.readouterr().out
    retried = run_id_printed(out)
    assert out == f'run {retried} of "hourly" enqueued (manual retry of run {failed}, probe)\n'
    old, new = await pool.fetch("SELECT * FROM runs ORDER BY id")
    assert (new["id"], new["trigger"], new["state"], new["error"]) == (retried, "manual", "enqueued", None)
    for column in ("schedule_id", "schedule_name", "actor", "args", "options"):
        assert new[column] == old[column], column
    assert old["state"] == "failed"
    (message,) = await asyncio.to_thread(drain_queue, clean_queues, QUEUE)
    assert message["kwargs"] == {"kb": "docs", "seconds": 1}
    assert message["options"] == {**options, "run_id": retried}

    # with its schedule deleted, the run keeps its name and can still be retried
    assert await cli("schedules", "delete", "hourly") == 0
    capsys.readouterr()
    assert await cli("runs", "retry", str(failed)) == 0
    orphan = run_id_printed(capsys.readouterr().out)
    row = await pool.fetchrow("SELECT schedule_id, schedule_name, trigger, args FROM runs WHERE id = $1", orphan)
    assert row is not None
    assert tuple(row) == (None, "hourly", "manual", {"kb": "docs", "seconds": 1})

    assert await cli("runs", "retry", "999999") == 2
    assert capsys.readouterr().err == "punchclock: error: no run with id 999999: see punchclock runs list\n"


# ids and numbers beyond what PostgreSQL holds ------------------------------------------------------------

BEYOND_BIGINT = str(2**64 + 1)


@pytest.mark.parametrize("command", ["show", "cancel", "retry"])
@pytest.mark.parametrize("run_id", [BEYOND_BIGINT, "99999999999999999999", "0", "-5", str(2**63 - 1)])
async def test_a_run_id_no_run_can_have_is_not_found(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str], command: str, run_id: str
) -> None:
    await add_hourly()
    existing = await insert_run(pool, "failed", finished_at=datetime.now(UTC))
    before = await pool.fetch("SELECT * FROM runs ORDER BY id")
    capsys.readouterr()

    assert await cli("runs", command, run_id) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        f"punchclock: error: no run with id {run_id}: see punchclock runs list\n",
    )
    assert await pool.fetch("SELECT * FROM runs ORDER BY id") == before
    assert [r["id"] for r in before] == [existing]


@pytest.mark.parametrize("limit", ["99999999999999999999", "100001", "0", "-1"])
async def test_runs_list_refuses_a_limit_out_of_range(
    punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    assert await cli("runs", "list", "--limit", limit) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        f"punchclock: error: invalid --limit {limit}: must be 1-100000; narrow the list with --schedule or --state\n",
    )
    assert await cli("runs", "list", "--limit", "100000", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_stats_refuses_a_window_reaching_past_postgresqls_dates(
    punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("stats", "--since", "999999999d") == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        "punchclock: error: invalid --since 999999999d: must be at most 36500d, which already reaches back past"
        " every run\n",
    )
    assert await cli("stats", "--since", "36500d") == 0
    assert capsys.readouterr().out == "no runs in the last 36500d\n"


# show: attempts, notifications, blocked_by ----------------------------------------------------------------


async def test_show_lists_attempts_and_notifications(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    blocker = await insert_run(pool, "succeeded", finished_at=datetime.now(UTC))
    run_id = await insert_run(
        pool, "failed", attempts=2, started_at=start, finished_at=start + timedelta(seconds=40), blocked_by=blocker
    )
    await pool.executemany(
        "INSERT INTO run_attempts (run_id, attempt, started_at, finished_at, state, error, retry_delay_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (run_id, 1, start, start + timedelta(seconds=5), "retrying", "ConnectionError: refused", 12_500),
            (run_id, 2, start + timedelta(seconds=20), start + timedelta(seconds=40), "failed", "HTTP 400", None),
        ],
    )
    await pool.execute(
        "INSERT INTO notifications (run_id, target, event, state, attempts, error)"
        " VALUES ($1, 'slack:https://hooks.slack.com/***', 'failure', 'failed', 3, 'HTTP 404 from Slack')",
        run_id,
    )
    capsys.readouterr()

    assert await cli("runs", "show", str(run_id)) == 0
    out = capsys.readouterr().out
    assert f"blocked by:     run {blocker}\n" in out
    attempts = out[out.index("Attempts\n") :].splitlines()
    assert attempts[1].split() == ["#", "STATE", "STARTED", "DURATION", "ERROR", "RETRY", "DELAY"]
    assert attempts[3].split() == [
        "1",
        "retrying",
        "2026-03-01T12:00:00Z",
        "5s",
        "ConnectionError:",
        "refused",
        "12s500ms",
    ]
    assert attempts[4].split() == ["2", "failed", "2026-03-01T12:00:20Z", "20s", "HTTP", "400", "-"]
    notifications = out[out.index("Notifications\n") :].splitlines()
    assert notifications[1].split() == ["TARGET", "EVENT", "STATE", "ATTEMPTS", "ERROR"]
    assert notifications[3].split() == [
        "slack:https://hooks.slack.com/***",
        "failure",
        "failed",
        "3",
        "HTTP",
        "404",
        "from",
        "Slack",
    ]

    assert await cli("runs", "show", str(run_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["blocked_by"] == blocker
    assert shown["cancel_requested"] is False
    assert shown["attempt_history"] == [
        {
            "attempt": 1,
            "state": "retrying",
            "started_at": "2026-03-01T12:00:00.000Z",
            "finished_at": "2026-03-01T12:00:05.000Z",
            "duration_seconds": 5.0,
            "error": "ConnectionError: refused",
            "retry_delay_ms": 12_500,
        },
        {
            "attempt": 2,
            "state": "failed",
            "started_at": "2026-03-01T12:00:20.000Z",
            "finished_at": "2026-03-01T12:00:40.000Z",
            "duration_seconds": 20.0,
            "error": "HTTP 400",
            "retry_delay_ms": None,
        },
    ]
    (notification,) = shown["notifications"]
    assert notification == {
        **notification,
        "target": "slack:https://hooks.slack.com/***",
        "event": "failure",
        "state": "failed",
        "attempts": 3,
        "error": "HTTP 404 from Slack",
        "sent_at": None,
    }

    assert await cli("runs", "show", str(blocker), "--json") == 0
    assert json.loads(capsys.readouterr().out)["attempt_history"] == []
    assert await cli("runs", "show", str(blocker)) == 0
    out = capsys.readouterr().out
    assert "Attempts" not in out
    assert "Notifications" not in out


# stats ----------------------------------------------------------------------------------------------------


async def insert_finished(
    pool: Pool, schedule: str, state: str, seconds: list[int], *, age: timedelta = timedelta(hours=1)
) -> None:
    """Runs of ``schedule`` created ``age`` ago, lasting ``seconds`` each, finishing in list order."""
    await pool.execute(
        "INSERT INTO runs (schedule_name, actor, scheduled_for, trigger, state, created_at, started_at, finished_at)"
        " SELECT $1, 'probe', now(), 'cron', $2, now() - $4::interval,"
        "        now() - interval '50 minutes' + make_interval(mins => n::int) - make_interval(secs => s),"
        "        now() - interval '50 minutes' + make_interval(mins => n::int)"
        " FROM unnest($3::int[]) WITH ORDINALITY AS durations (s, n)",
        schedule,
        state,
        seconds,
        age,
    )


async def test_stats(punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]) -> None:
    # "etl": 9 succeeded (1-9 s), then one failed (10 s) and one timed out (20 s), one cancelled before it
    # started, one running; and a failure two days old, outside the default window.
    await insert_finished(pool, "etl", "succeeded", list(range(1, 10)))
    await pool.execute(
        "UPDATE runs SET finished_at = finished_at - interval '1 hour', started_at = started_at - interval '1 hour'"
    )
    await insert_finished(pool, "etl", "failed", [10])
    await insert_finished(pool, "etl", "timed_out", [20])
    await pool.execute(
        "INSERT INTO runs (schedule_name, actor, scheduled_for, trigger, state, started_at, finished_at) VALUES"
        " ('etl', 'probe', now(), 'cron', 'cancelled', NULL, now()),"
        " ('etl', 'probe', now(), 'cron', 'running', now(), NULL)"
    )
    await insert_finished(pool, "etl", "failed", [500], age=timedelta(days=2))
    await insert_finished(pool, "digest", "succeeded", [2])
    capsys.readouterr()

    assert await cli("stats", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "since_seconds": 86400.0,
        "schedules": [
            {
                "schedule": "digest",
                "runs": 1,
                "states": {"succeeded": 1},
                "success_rate": 1.0,
                "p50_seconds": 2.0,
                "p95_seconds": 2.0,
                "recent_seconds": [2.0],
                "sparkline": "▄",
            },
            {
                "schedule": "etl",
                "runs": 13,
                "states": {"succeeded": 9, "failed": 1, "timed_out": 1, "cancelled": 1, "running": 1},
                "success_rate": 9 / 11,
                # sorted 1..10, 20: p50 is the 6th; p95 sits halfway between 10 and 20
                "p50_seconds": 6.0,
                "p95_seconds": 15.0,
                "recent_seconds": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 20.0],
                "sparkline": "▁▁▂▂▃▃▃▄▄█",
            },
        ],
    }

    assert await cli("stats") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "SCHEDULE", "RUNS", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "SUCCESS", "P50", "P95",
        "LAST", "10",
    ]  # fmt: skip
    assert lines[2].split() == ["digest", "1", "0", "1", "0", "0", "0", "100%", "2s", "2s", "▄"]
    assert lines[3].split() == ["etl", "13", "1", "9", "1", "1", "1", "81.8%", "6s", "15s", "▁▁▂▂▃▃▃▄▄█"]

    assert await cli("stats", "--since", "3d", "--json") == 0
    etl = json.loads(capsys.readouterr().out)["schedules"][1]
    assert (etl["runs"], etl["states"]["failed"], etl["p95_seconds"]) == (14, 2, pytest.approx(236.0))

    assert await cli("stats", "--since", "forever") == 2
    assert capsys.readouterr().err.startswith('punchclock: error: --since: invalid duration "forever"')
    await pool.execute("DELETE FROM runs")
    assert await cli("stats") == 0
    assert capsys.readouterr().out == "no runs in the last 1d\n"
    assert await cli("stats", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"since_seconds": 86400.0, "schedules": []}


# formats: instants, durations, steps ----------------------------------------------------------------------

# Every instant the CLI prints, text or JSON: ISO 8601 to the second (JSON: the millisecond), "Z" for UTC and
# never "+00:00", or the schedule's own offset.
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?(Z|[+-](?!00:00)\d\d:\d\d)")
LOOKS_LIKE_AN_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.+Z-]*")


def json_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return [value] if isinstance(value, str) else []


async def test_every_instant_is_printed_one_way(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()  # UTC
    assert (
        await cli("schedules", "add", "nightly", "--actor", "probe", "--cron", "30 2 * * *", "--tz", "Asia/Tokyo") == 0
    )
    start = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    run_id = await insert_run(
        pool, "failed", attempts=1, started_at=start, finished_at=start + timedelta(seconds=3), enqueued_at=start
    )
    await pool.execute(
        "INSERT INTO run_attempts (run_id, attempt, started_at, finished_at, state, error)"
        " VALUES ($1, 1, $2, $3, 'failed', 'boom')",
        run_id,
        start,
        start + timedelta(seconds=3),
    )
    await pool.execute(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
        " SELECT id, name, actor, now(), 'manual', 'scheduled' FROM schedules WHERE name = 'nightly'"
    )
    capsys.readouterr()

    printed: list[str] = []
    for command in (
        ("runs", "list"),
        ("runs", "show", str(run_id)),
        ("schedules", "list"),
        ("schedules", "show", "hourly"),
        ("schedules", "show", "nightly"),
        ("schedules", "next", "hourly"),
        ("schedules", "next", "nightly"),
    ):
        assert await cli(*command) == 0
        text = capsys.readouterr().out
        printed += LOOKS_LIKE_AN_INSTANT.findall(text)
        assert await cli(*command, "--json") == 0
        printed += [s for s in json_strings(json.loads(capsys.readouterr().out)) if re.match(r"\d{4}-\d\d-", s)]
    assert len(printed) > 40
    assert [p for p in printed if not INSTANT.fullmatch(p)] == []
    assert "2026-03-01T12:00:00Z" in printed  # text: to the second
    assert "2026-03-01T12:00:00.123Z" in printed  # JSON: to the millisecond
    assert any(p.endswith("+09:00") for p in printed)  # Tokyo's runs and fires, in Tokyo


async def test_durations_are_written_as_they_are_typed_in_text_and_as_numbers_in_json(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly("--min-backoff", "15s", "--max-backoff", "2m", "--timeout", "20m5s", "--catchup-window", "90s")
    assert await cli("schedules", "trigger", "hourly") == 0
    run_id = run_id_printed(capsys.readouterr().out)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await pool.execute(
        "UPDATE runs SET state = 'succeeded', started_at = $2, finished_at = $3 WHERE id = $1",
        run_id,
        start,
        start + timedelta(seconds=1, milliseconds=3),
    )

    assert await cli("runs", "show", str(run_id)) == 0
    out = capsys.readouterr().out
    options = next(line for line in out.splitlines() if line.startswith("options:"))
    for shown in ("max_backoff=2m", "min_backoff=15s", "time_limit=20m5s", "max_retries=3", "overlap=skip"):
        assert shown in options, options
    assert "1500000" not in options and "lock_key" not in options  # no raw milliseconds, no unset options
    assert "duration:       1s3ms\n" in out

    assert await cli("runs", "show", str(run_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["duration_seconds"], shown["options"]["time_limit_ms"], shown["options"]["min_backoff_ms"]) == (
        1.003,
        1_205_000,
        15_000,
    )
    assert "duration" not in shown and "time_limit" not in shown["options"]

    assert await cli("schedules", "show", "hourly", "--json") == 0
    schedule = json.loads(capsys.readouterr().out)
    assert (schedule["timeout_seconds"], schedule["catchup_window_seconds"], schedule["jitter_seconds"]) == (
        1205,
        90,
        0,
    )
    assert await cli("schedules", "show", "hourly") == 0
    out = capsys.readouterr().out
    assert "misfire:      latest (catch-up window 1m30s)\n" in out
    assert "timeout:      20m5s (not retried)\n" in out


async def test_show_lists_the_steps_of_each_attempt(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_hourly()
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    run_id = await insert_run(
        pool, "succeeded", attempts=2, started_at=start, finished_at=start + timedelta(minutes=2), input_tokens=120
    )

    def at(minutes: int, seconds: int) -> datetime:
        return start + timedelta(minutes=minutes, seconds=seconds)

    await pool.executemany(
        "INSERT INTO run_steps (run_id, attempt, seq, name, started_at, finished_at, status, error, input_tokens,"
        " output_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            (run_id, 1, 1, "fetch", start, at(0, 2), "error", "ConnectError: refused", 0, 0),
            (run_id, 2, 1, "fetch", at(1, 0), at(1, 1), "ok", None, 0, 0),
            (run_id, 2, 2, "summarize", at(1, 1), at(2, 0), "ok", None, 120, 45),
        ],
    )
    capsys.readouterr()

    assert await cli("runs", "show", str(run_id)) == 0
    out = capsys.readouterr().out
    steps = out[out.index("Steps\n") :].splitlines()
    assert steps[1].split() == ["ATTEMPT", "STEP", "STATUS", "DURATION", "TOKENS", "ERROR"]
    assert steps[3].split() == ["1", "fetch", "error", "2s", "0", "in,", "0", "out", "ConnectError:", "refused"]
    assert steps[4].split() == ["2", "fetch", "ok", "1s", "0", "in,", "0", "out", "-"]
    assert steps[5].split() == ["2", "summarize", "ok", "59s", "120", "in,", "45", "out", "-"]

    assert await cli("runs", "show", str(run_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(s["attempt"], s["name"], s["status"], s["duration_seconds"]) for s in shown["steps"]] == [
        (1, "fetch", "error", 2.0),
        (2, "fetch", "ok", 1.0),
        (2, "summarize", "ok", 59.0),
    ]
    assert shown["steps"][2] == {
        **shown["steps"][2],
        "seq": 2,
        "input_tokens": 120,
        "output_tokens": 45,
        "error": None,
        "started_at": "2026-03-01T12:01:01.000Z",
    }


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--timeout", "2h"], 'invalid timeout 2h for schedule "hourly": must be above 0 and at most 30m'),
        (["--min-backoff", "5m", "--max-backoff", "1m30s"], "min_backoff 5m is above max_backoff 1m30s"),
    ],
)
async def test_a_duration_in_an_error_is_written_as_it_is_typed(
    punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str], options: list[str], error: str
) -> None:
    assert await cli("schedules", "add", "hourly", "--actor", "probe", "--cron", "0 * * * *", *options) == 2
    assert capsys.readouterr().err.startswith(f"punchclock: error: {error}")
