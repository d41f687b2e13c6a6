"""Schedules declared in code. Synced into the database when a worker boots (created or updated; one removed
from here is paused and marked orphaned, never deleted). ``punchclock schedules list`` shows them."""

from datetime import timedelta

from app.schedule import Schedule

SCHEDULES = [
    Schedule(
        name="daily-brief",
        actor="run_workflow",
        cron="0 9 * * 1-5",
        timezone="Asia/Shanghai",
        # Point "source" at your sales data (JSON over HTTP); the LLM comes from PUNCHCLOCK_LLM_*.
        args={"workflow": "daily_brief"},
        timeout=timedelta(minutes=10),
        description="09:00 Beijing time on weekdays: an LLM-written sales brief that remembers yesterday's advice.",
    ),
    Schedule(
        name="heartbeat",
        actor="probe",
        cron="* * * * *",
        args={"output": {"ok": True}},
        description="Every minute: proves the clock, the broker and a worker are alive.",
    ),
    Schedule(
        name="nightly-check",
        actor="probe",
        cron="30 2 * * *",
        timezone="Asia/Shanghai",
        args={"seconds": 1, "output": {"checked": "nightly"}},
        catchup_window=timedelta(hours=6),
        description="02:30 Beijing time: a longer probe; missed nights within 6 hours still run.",
    ),
]
