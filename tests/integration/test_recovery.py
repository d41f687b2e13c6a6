"""The recovery sweep on the real PostgreSQL: what a crash or an outage left behind is moved on, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from app.notify.store import claim, create_notifications
from app.recovery import Sweep, sweep
from app.runs import RunState, finish_attempt, start_run

TTL = timedelta(minutes=5)
HOOK = "webhook:http://127.0.0.1:9/hook"


def config(sent: list[int]) -> Sweep:
    return Sweep(
        republish_after=timedelta(minutes=10),
        create_notifications=create_notifications,
        send_notification=sent.append,
    )


async def schedule(pool: asyncpg.Pool[Any], name: str, **columns: Any) -> int:
    notify = columns.get("notify", [HOOK])
    after = columns.get("after", [])
    schedule_id: int = await pool.fetchval(
        "INSERT INTO schedules (name, actor, notify, after) VALUES ($1, 'probe', $2, $3) RETURNING id",
        name,
        notify,
        after,
    )
    return schedule_id


async def run_of(pool: asyncpg.Pool[Any], schedule_id: int, name: str) -> int:
    run_id: int = await pool.fetchval(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
        " VALUES ($1, $2, 'probe', date_trunc('minute', now()), 'cron', 'enqueued') RETURNING id",
        schedule_id,
        name,
    )
    return run_id


async def test_follow_ups_left_behind_by_a_crash_are_done_once(pool: asyncpg.Pool[Any]) -> None:
    failing = await run_of(pool, await schedule(pool, "nightly"), "nightly")
    upstream = await run_of(pool, await schedule(pool, "load", notify=[]), "load")
    await schedule(pool, "report", notify=[], after=["load"])
    for run_id, state in ((failing, RunState.FAILED), (upstream, RunState.SUCCEEDED)):
        await start_run(pool, run_id, None, "allow", TTL)
        outcome = await finish_attempt(pool, run_id, state, attempt=1, error="boom")
        assert outcome is not None and outcome.followups_due
    # The worker died right after recording the ends: nothing else happened. A while later, the sweep:
    await pool.execute("UPDATE runs SET finished_at = now() - interval '1 minute' WHERE followups_due")
    sent: list[int] = []
    report = await sweep(pool, config(sent), batch=10)
    assert report.followups == 2
    notifications = await pool.fetch("SELECT id, run_id, event, state FROM notifications")
    assert [(n["run_id"], n["event"], n["state"]) for n in notifications] == [(failing, "failure", "pending")]
    assert sent == [notifications[0]["id"]]
    dependent = await pool.fetchrow("SELECT * FROM runs WHERE schedule_name = 'report'")
    assert (dependent["trigger"], dependent["state"], dependent["args"]) == (
        "dependency",
        "scheduled",
        {"upstream": {"load": None}},
    )
    # A second sweep finds nothing left: no second notification, no second dependent run.
    again = await sweep(pool, config(sent), batch=10)
    assert again.followups == 0 and len(sent) == 1
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE schedule_name = 'report'") == 1


async def test_a_pending_notification_is_sent_again_but_never_while_a_delivery_holds_it(
    pool: asyncpg.Pool[Any],
) -> None:
    run_id = await run_of(pool, await schedule(pool, "nightly"), "nightly")
    [stuck, busy] = await create_notifications(pool, run_id, "failure", [HOOK, HOOK + "-2"])
    await pool.execute("UPDATE notifications SET created_at = now() - interval '2 minutes'")
    assert await claim(pool, busy, timedelta(minutes=5))  # a delivery is under way
    sent: list[int] = []
    report = await sweep(pool, config(sent), batch=10)
    assert (report.notifications, sent) == (1, [stuck])
    assert not await claim(pool, busy, timedelta(minutes=5))  # held: a second delivery does not start
    assert await claim(pool, stuck, timedelta(minutes=5))  # the re-sent message's delivery takes it
    assert (await sweep(pool, config(sent), batch=10)).notifications == 0  # not again a minute later


async def test_lost_attempts_and_lost_messages_go_back_to_the_outbox(pool: asyncpg.Pool[Any]) -> None:
    crashed = await run_of(pool, await schedule(pool, "a", notify=[]), "a")
    forgotten = await run_of(pool, await schedule(pool, "b", notify=[]), "b")
    await start_run(pool, crashed, None, "allow", TTL)
    await pool.execute("UPDATE runs SET alive_until = now() - interval '1 second' WHERE id = $1", crashed)
    await pool.execute("UPDATE runs SET enqueued_at = now() - interval '11 minutes' WHERE id = $1", forgotten)
    report = await sweep(pool, config([]), batch=10)
    assert (report.recovered, report.republished) == ({"scheduled": 1}, 1)
    states = {r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM runs")}
    assert states == {crashed: "scheduled", forgotten: "scheduled"}
    assert await pool.fetchval("SELECT state FROM run_attempts WHERE run_id = $1", crashed) == "lost"
