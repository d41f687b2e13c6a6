"""Schedules and knowledge bases declared in code. Synced into the database when a worker boots (created or
updated; one removed from here is marked orphaned, never deleted: a schedule is also paused).
``punchclock schedules list`` and ``punchclock kb list`` show them."""

from datetime import timedelta

from app.kb.definition import Folder, KnowledgeBase
from app.kb.gate import Gate, GoldenQuery
from app.schedule import Schedule

KNOWLEDGE_BASES = [
    # This project's own docs, offline: the lexical embedder matches words and character n-grams, not meaning.
    KnowledgeBase(
        "docs",
        sources=[Folder("docs", "**/*.md")],
        golden=[
            GoldenQuery("which faults does punchclock survive", expected_sources=("faults.md",)),
            GoldenQuery("how to upgrade and run punchclock on several hosts", expected_sources=("operations.md",)),
        ],
        gate=Gate(min_hit_at_k=1.0),
    ),
]

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
        name="docs-reindex",
        actor="reindex",
        cron="0 3 * * *",
        args={"kb": "docs"},
        description="03:00 UTC: reindex the docs knowledge base (only changed files are read again).",
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
