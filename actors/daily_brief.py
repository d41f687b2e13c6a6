"""``daily_brief``: a sales brief written by an LLM every working day, remembering yesterday's suggestion.

Fetches JSON data over HTTP (``params["source"]``), builds a prompt with the date, the weekday and whether it
is a Chinese working day (``chinese-calendar`` knows the make-up working days around holidays), and the
suggestion the previous run made; asks the LLM; stores the new suggestion for the next run. The run's output
is the brief. Schedule it with ``actor="run_workflow"`` and ``args={"workflow": "daily_brief", "source": URL}``
(without a source the brief says there was no data).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import chinese_calendar

from app.workflows.context import WorkflowContext
from app.workflows.definition import workflow

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SUGGESTION_MARK = "Suggestion:"
MAX_DATA_CHARS = 6_000  # keep the prompt bounded whatever the source returns


def working_day(day: date) -> tuple[bool, str]:
    """Whether ``day`` is a working day in mainland China, and how we know. Outside the years the calendar
    covers, weekdays count as working days, and the note says so."""
    try:
        if chinese_calendar.is_workday(day):
            on_holiday = not chinese_calendar.is_holiday(day) and day.weekday() >= 5
            return True, "a make-up working day" if on_holiday else "a working day"
        return False, "a public holiday or weekend"
    except NotImplementedError:
        return day.weekday() < 5, f"the holiday calendar does not cover {day.year}: judged by weekday"


def build_prompt(day: date, data: Any, last_suggestion: str | None) -> list[dict[str, str]]:
    """The chat messages for the brief of ``day`` (pure)."""
    workday, why = working_day(day)
    context = [
        f"Today is {day.isoformat()}, a {WEEKDAYS[day.weekday()]}; in China it is {why}.",
        f"Yesterday's suggestion was: {last_suggestion}" if last_suggestion else "There is no earlier suggestion.",
        "Sales data (JSON):",
        json.dumps(data, ensure_ascii=False)[:MAX_DATA_CHARS],
    ]
    task = (
        "Write a short sales brief for the team: what changed, what matters today"
        + ("" if workday else " (today is not a working day: keep it to what cannot wait)")
        + f". Say whether yesterday's suggestion still holds. End with one line starting '{SUGGESTION_MARK}'."
    )
    return [
        {"role": "system", "content": "You are a concise sales analyst. Answer in plain text."},
        {"role": "user", "content": "\n".join([*context, "", task])},
    ]


def parse_suggestion(text: str) -> str:
    """The line after the suggestion mark, or the last non-empty line when the model forgot it."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(SUGGESTION_MARK):
            return line[len(SUGGESTION_MARK) :].strip()
    return lines[-1] if lines else ""


@workflow("daily_brief", uses={"http", "llm", "memory"})
async def daily_brief(ctx: WorkflowContext) -> dict[str, Any]:
    """A sales brief from the day's data, the working-day calendar and yesterday's suggestion."""
    day = ctx.run.local.date()
    source = ctx.params.get("source")
    data: Any = {"note": "no data source configured: set the schedule's source argument"}
    if source:
        async with ctx.step("fetch"):
            response = await ctx.http.get(source)
            response.raise_for_status()
            data = response.json()
    async with ctx.step("recall"):
        last = await ctx.memory.get("last_suggestion")
    async with ctx.step("write"):
        answer = await ctx.llm.chat(build_prompt(day, data, last))
    suggestion = parse_suggestion(answer.text)
    async with ctx.step("remember"):
        await ctx.memory.set("last_suggestion", suggestion)
    workday, _ = working_day(day)
    return {"date": day.isoformat(), "working_day": workday, "brief": answer.text, "suggestion": suggestion}
