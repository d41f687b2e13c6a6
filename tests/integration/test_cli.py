"""The ``punchclock`` CLI against the real PostgreSQL (a fresh database per test) and the real RabbitMQ.

``main`` runs its own event loop (``asyncio.run``), so the tests call it in a thread and check the database
through the ``pool`` fixture on the session loop. One test per exit-code path runs the real console script.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import asyncpg
import pika
import pytest

from app.cli.main import main
from tests import services
from tests.wiring import fresh_app_actors

PUNCHCLOCK = Path(sys.executable).parent / "punchclock"
UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"
QUEUE = "default"  # the probe actor's queue

if TYPE_CHECKING:
    Pool = asyncpg.Pool[Any]


WIRING_ENV = {"PUNCHCLOCK_SCHEDULES_MODULE": "", "PUNCHCLOCK_BROKER_URL": services.RABBITMQ_URL}


@pytest.fixture(scope="module", autouse=True)
def wiring() -> Iterator[ModuleType]:
    """``app.actors`` as the in-process CLI uses it: with the tests' settings (no code schedules, the tests'
    RabbitMQ to publish on), imported before ``capsys`` swaps stderr, since it binds its log handler to stderr
    when imported. Imported afresh: another test module may have imported it with the shell's environment
    already (tests/unit/test_retries.py does, at collection), and a plain import would change nothing."""
    with fresh_app_actors(WIRING_ENV) as module:
        yield module


def test_the_cli_runs_on_the_wiring_of_the_tests(capsys: pytest.CaptureFixture[str]) -> None:
    """What ``wiring`` guarantees, whichever test module imported ``app.actors`` first."""
    import app.actors
    from app.cli import deployment

    assert (app.actors.settings.schedules_module, app.actors.schedules) == ("", [])
    assert app.actors.settings.broker_url == services.RABBITMQ_URL
    assert deployment.publisher() is app.actors.publisher
    # bound before capsys swapped stderr: the CLI's log lines never mix with what the tests read from it
    assert [h for h in logging.getLogger("app").handlers if getattr(h, "stream", None) is sys.stderr] == []


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def run_console_script(*argv: str, **env: str) -> tuple[int, str, str]:
    """The installed ``punchclock`` as a subprocess, with this test's environment plus ``env``."""
    process = await asyncio.create_subprocess_exec(
        str(PUNCHCLOCK),
        *argv,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def add_nightly(*extra: str) -> None:
    code = await cli(
        "schedules", "add", "nightly", "--actor", "probe", "--cron", "30 2 * * *", "--tz", "America/New_York", *extra
    )
    assert code == 0


async def schedule_count(pool: Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM schedules")
    return count


def run_id_printed(text: str) -> int:
    match = re.search(r"\brun (\d+)\b", text)
    assert match, text
    return int(match.group(1))


# add, list, show, next ------------------------------------------------------------------------------------


async def test_add_list_show(punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]) -> None:
    await add_nightly(
        "--args", '{"seconds": 1}', "--misfire", "all", "--catchup-window", "2h", "--description", "nightly probe"
    )
    out = capsys.readouterr().out
    assert 'created schedule "nightly"' in out
    assert re.search(r"next fire: \d{4}-\d\d-\d\dT02:30:00-0[45]:00 \(", out), out

    row = await pool.fetchrow("SELECT * FROM schedules WHERE name = 'nightly'")
    assert row is not None
    assert (row["actor"], row["cron"], row["timezone"], row["args"], row["misfire"], row["source"]) == (
        "probe",
        "30 2 * * *",
        "America/New_York",
        {"seconds": 1},
        "all",
        "cli",
    )

    assert await cli("schedules", "list") == 0
    header, _, line = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == ["NAME", "ACTOR", "CRON", "TIMEZONE", "STATUS", "SOURCE"]
    assert line.split()[:9] == ["nightly", "probe", "30", "2", "*", "*", "*", "America/New_York", "active"]

    assert await cli("schedules", "list", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "nightly"
    assert listed["catchup_window_seconds"] == 7200
    assert listed["timeout_seconds"] == 1500
    assert listed["status"] == "active"
    assert listed["last_state"] is None
    assert listed["next_fire_at"].endswith(":00.000Z")

    assert await cli("schedules", "show", "nightly") == 0
    out = capsys.readouterr().out
    for expected in (
        "description:  nightly probe",
        "misfire:      all (catch-up window 2h)",
        "Next 5 fires",
        "no runs yet",
    ):
        assert expected in out, out

    assert await cli("schedules", "show", "nightly", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["args"] == {"seconds": 1}
    assert len(shown["next_fires"]) == 5
    assert shown["runs"] == []

    assert await cli("schedules", "show", "missing") == 2
    assert 'no schedule named "missing"' in capsys.readouterr().err


async def test_next_over_spring_forward(punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """2026-03-08 02:30 does not exist in New York: that night fires once, at 03:00 EDT."""
    await add_nightly()
    capsys.readouterr()

    assert await cli("schedules", "next", "nightly", "-n", "2", "--after", "2026-03-07T12:00") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ('next 2 fires of "nightly" (30 2 * * *, America/New_York) after 2026-03-07T12:00:00-05:00')
    assert lines[1].split() == ["#", "America/New_York", "ABBREVIATION", "UTC"]  # every column labelled
    assert lines[3].split() == ["1", "2026-03-08T03:00:00-04:00", "EDT", "2026-03-08T07:00:00Z"]
    assert lines[4].split() == ["2", "2026-03-09T02:30:00-04:00", "EDT", "2026-03-09T06:30:00Z"]
    assert len(lines) == 5

    # An offset is honoured (06:59:59Z is 01:59:59 EST, before the gap), and JSON carries both zones.
    assert await cli("schedules", "next", "nightly", "-n", "2", "--after", "2026-03-08T06:59:59Z", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "schedule": "nightly",
        "cron": "30 2 * * *",
        "timezone": "America/New_York",
        "after": "2026-03-08T01:59:59.000-05:00",
        "fires": [
            {"local": "2026-03-08T03:00:00.000-04:00", "utc": "2026-03-08T07:00:00.000Z"},
            {"local": "2026-03-09T02:30:00.000-04:00", "utc": "2026-03-09T06:30:00.000Z"},
        ],
    }


@pytest.mark.parametrize("after", ["tomorrow", "2026-13-01T00:00", "07/03/2026 12:00"])
async def test_next_rejects_a_bad_after(
    punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str], after: str
) -> None:
    await add_nightly()
    capsys.readouterr()
    assert await cli("schedules", "next", "nightly", "--after", after) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"punchclock: error: invalid --after {after!r}: use ISO 8601, like 2026-03-07T12:00")


# add: bad input is refused, with nothing written ----------------------------------------------------------

NO_NAN = "PostgreSQL's jsonb has no NaN or Infinity; use a number or null"
HOW_LOCK_KEY = 'write plain {name} fields naming keyword arguments, like "reindex:{kb}"'


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # then the list of every actor, the project's own under actors/ too (tests/e2e/test_readme.py adds one)
        (["--actor", "nope"], 'unknown actor "nope" for schedule "bad": known actors are '),
        (["--cron", "61 * * * *"], 'invalid cron "61 * * * *": minute must be 0-59'),
        (["--cron", "* * * *"], 'invalid cron "* * * *": expected 5 fields'),
        (["--tz", "Mars/Olympus_Mons"], 'unknown time zone "Mars/Olympus_Mons": use an IANA name'),
        (["--catchup-window", "10x"], '--catchup-window: invalid duration "10x": use a number with a unit'),
        (["--misfire", "never"], '--misfire: invalid misfire policy "never": use one of skip, latest, all'),
        (["--args", "{seconds: 1}"], "invalid --args '{seconds: 1}': not JSON"),
        (["--args", "[1, 2]"], "invalid --args '[1, 2]': it is an array, not a JSON object"),
        (["--args", '"text"'], "invalid --args '\"text\"': it is a string, not a JSON object"),
        (["--overlap", "maybe"], 'invalid overlap policy "maybe": use one of skip, queue, allow'),
        (["--max-retries", "-1"], "invalid max_retries -1: must be 0 or more"),
        (["--min-backoff", "soon"], '--min-backoff: invalid duration "soon": use a number with a unit'),
        (["--max-backoff", "5 min"], '--max-backoff: invalid duration "5 min": use a number with a unit'),
        (["--timeout", "1.5h"], '--timeout: invalid duration "1.5h": use a number with a unit'),
        (["--jitter", "10x"], '--jitter: invalid duration "10x": use a number with a unit'),
        (["--timeout", "0s"], 'invalid timeout 0s for schedule "bad": must be above 0 and at most 30m'),
        (["--timeout", "31m"], 'invalid timeout 31m for schedule "bad": must be above 0 and at most 30m'),
        (["--max-backoff", "1h"], 'invalid max_backoff 1h for schedule "bad": must be above 0 and at most 30m'),
        (["--min-backoff", "2m", "--max-backoff", "1m"], "min_backoff 2m is above max_backoff 1m"),
        (["--cron", ""], 'schedule "bad" needs a cron expression (or upstream schedules in after)'),
        # what PostgreSQL's jsonb refuses and Python's json reads
        (["--args", '{"seconds": NaN}'], f"invalid --args '{{\"seconds\": NaN}}': NaN at args.seconds: {NO_NAN}"),
        (["--args", '{"s": Infinity}'], f"invalid --args '{{\"s\": Infinity}}': Infinity at args.s: {NO_NAN}"),
        (
            ["--args", '{"s": [-Infinity]}'],
            f"invalid --args '{{\"s\": [-Infinity]}}': -Infinity at args.s[0]: {NO_NAN}",
        ),
        (["--args", '{"s": 1e999}'], f"invalid --args '{{\"s\": 1e999}}': Infinity at args.s: {NO_NAN}"),
        (
            ["--args", r'{"output": "a\u0000b"}'],
            r"""invalid --args '{"output": "a\\u0000b"}': a NUL character (\u0000) in the string at args.output:"""
            " PostgreSQL's jsonb cannot store it; remove it",
        ),
        (
            ["--args", r'{"a\u0000b": 1}'],
            r"""invalid --args '{"a\\u0000b": 1}': a NUL character (\u0000) in the key "a\u0000b" at args:""",
        ),
        (
            ["--args", r'{"output": "\ud800"}'],
            r"""invalid --args '{"output": "\\ud800"}': a lone UTF-16 surrogate (\ud800) in the string at"""
            " args.output:",
        ),
        (
            ["--args", '{"n": ' + "1" * 5000 + "}"],
            f"invalid --args '{{\"n\": {'1' * 94}'… (5,007 characters): a number has more than 4300 digits;"
            " pass it as a string",
        ),
        # args that do not fit the actor: every run would fail with a TypeError in the worker
        (
            ["--args", '{"nosuchparam": 1}'],
            'args of schedule "bad" do not fit: actor "probe" has no parameter "nosuchparam": it takes seconds,'
            ' fail_times, output, url, permanent, upstream, record; remove "nosuchparam" from the args',
        ),
        (
            ["--actor", "run_workflow", "--args", '{"workflow": "daily_breif"}'],
            'args of schedule "bad" do not fit: actor "run_workflow" has no workflow "daily_breif": this deployment'
            " has daily_brief, dify",
        ),
        (
            ["--actor", "run_workflow"],
            'args of schedule "bad" do not fit: actor "run_workflow" needs the parameter "workflow": add it to the'
            ' args (e.g. {"workflow": ...})',
        ),
        (
            ["--actor", "dify", "--args", '{"app": "weather"}'],
            'args of schedule "bad" do not fit: actor "dify" has no app "weather": this deployment has none',
        ),
        (
            ["--lock-key", "reindex:{kb}", "--args", '{"seconds": 1}'],
            'lock_key "reindex:{kb}" names "kb", which the args of schedule "bad" lack (they have seconds): add "kb"'
            " to the args or change the lock key",
        ),
        # bounds: past them PostgreSQL, RabbitMQ or the tick would fail later, with an error of their own
        (
            ["--max-retries", "100000000000"],
            'invalid max_retries 100000000000 for schedule "bad": must be at most 100;',
        ),
        (["--max-retries", "101"], 'invalid max_retries 101 for schedule "bad": must be at most 100;'),
        (["--jitter", "10d"], 'invalid jitter 10d for schedule "bad": must be at most 25m: a run waits out its jitter'),
        (["--jitter", "25m1s"], 'invalid jitter 25m1s for schedule "bad": must be at most 25m:'),
        (["--catchup-window", "999999999d"], 'invalid catchup_window 999999999d for schedule "bad": must be at most'),
        # lock key templates: plain {name} fields only, and short
        (
            ["--lock-key", "{seconds:>20000000}"],
            'invalid lock_key "{seconds:>20000000}": field "{seconds:>20000000}" has a format spec;'
            f" {HOW_LOCK_KEY}",
        ),
        (
            ["--lock-key", "x:{__class__}"],
            'invalid lock_key "x:{__class__}": field "{__class__}" is a dunder name, not an argument;'
            f" {HOW_LOCK_KEY}",
        ),
        (
            ["--lock-key", "x:{seconds.real}"],
            'invalid lock_key "x:{seconds.real}": field "{seconds.real}" is not the name of a keyword argument',
        ),
        (
            ["--lock-key", "x:{seconds[0]}"],
            'invalid lock_key "x:{seconds[0]}": field "{seconds[0]}" is not the name of a keyword argument',
        ),
        (
            ["--lock-key", "x:{seconds!r}"],
            f'invalid lock_key "x:{{seconds!r}}": field "{{seconds!r}}" has a conversion; {HOW_LOCK_KEY}',
        ),
        (
            ["--lock-key", "x:{seconds:{width}}"],
            'invalid lock_key "x:{seconds:{width}}": field "{seconds:{width}}" has a format spec',
        ),
        (
            ["--lock-key", "k" * 197 + "{kb}"],
            f'invalid lock_key "{"k" * 40}…": 201 characters, more than 200; {HOW_LOCK_KEY}',
        ),
    ],
)
async def test_add_rejects_bad_input(
    punchclock_env: dict[str, str],
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    values = {"--actor": "probe", "--cron": "*/5 * * * *"}
    extra: list[str] = []
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag in values:
            values[flag] = value
        else:
            extra += [flag, value]
    cron = ["--cron", values["--cron"]] if values["--cron"] else []
    argv = ["schedules", "add", "bad", "--actor", values["--actor"], *cron, *extra]

    assert await cli(*argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"punchclock: error: {message}"), captured.err
    assert captured.err.count("\n") == 1
    assert await schedule_count(pool) == 0


async def test_add_worker_side_options_round_trip(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly()
    capsys.readouterr()
    options = [
        "--overlap", "queue",
        "--lock-key", "reindex:{output}",
        "--max-retries", "5",
        "--min-backoff", "2s",
        "--max-backoff", "1m30s",
        "--timeout", "30m",
        "--jitter", "45s",
        "--notify", "webhook:https://hooks.example.com/punchclock",
        "--notify", "mailto:ops@example.com",
        "--after", "nightly",
        "--retry-timeouts",
        "--notify-on-recovery",
    ]  # fmt: skip
    assert await cli("schedules", "add", "report", "--actor", "probe", "--args", '{"output": "docs"}', *options) == 0
    out = capsys.readouterr().out
    assert out == 'created schedule "report": probe after nightly succeeds\n'

    row = await pool.fetchrow("SELECT * FROM schedules WHERE name = 'report'")
    assert row is not None
    assert dict(row) == {
        **dict(row),
        "cron": None,
        "next_fire_at": None,
        "overlap": "queue",
        "lock_key": "reindex:{output}",
        "max_retries": 5,
        "min_backoff": timedelta(seconds=2),
        "max_backoff": timedelta(seconds=90),
        "timeout": timedelta(minutes=30),
        "jitter": timedelta(seconds=45),
        "notify": ["webhook:https://hooks.example.com/punchclock", "mailto:ops@example.com"],
        "after": ["nightly"],
        "retry_timeouts": True,
        "notify_on_recovery": True,
    }

    assert await cli("schedules", "show", "report", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        **shown,
        "cron": None,
        "next_fire_at": None,
        "next_fires": [],
        "overlap": "queue",
        "lock_key": "reindex:{output}",
        "max_retries": 5,
        "min_backoff_seconds": 2,
        "max_backoff_seconds": 90,
        "timeout_seconds": 1800,
        "retry_timeouts": True,
        "jitter_seconds": 45,
        # the webhook's path is its secret: shown masked
        "notify": ["webhook:https://hooks.example.com/***", "mailto:ops@example.com"],
        "notify_on_recovery": True,
        "after": ["nightly"],
    }
    assert await cli("schedules", "list", "--json") == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert {key: value for key, value in listed["report"].items() if key in shown} == {
        key: value for key, value in shown.items() if key in listed["report"]
    }
    assert (listed["nightly"]["overlap"], listed["nightly"]["retry_timeouts"], listed["nightly"]["notify"]) == (
        "skip",
        False,
        [],
    )

    assert await cli("schedules", "show", "report") == 0
    out = capsys.readouterr().out
    for expected in (
        "overlap:      queue",
        "lock key:     reindex:{output}",
        "max retries:  5",
        "backoff:      2s to 1m30s",
        "timeout:      30m (retried)",
        "jitter:       45s",
        "notify:       webhook:https://hooks.example.com/***, mailto:ops@example.com (and on recovery)",
        "after:        nightly",
    ):
        assert expected in out, out
    assert await cli("schedules", "list") == 0
    assert capsys.readouterr().out.splitlines()[3].split()[:4] == ["report", "probe", "after", "nightly"]


async def test_add_accepts_each_bound_itself(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    template = "k" * 192 + "{output}"  # 200 characters
    options = ["--jitter", "25m", "--max-retries", "100", "--catchup-window", "3650d", "--lock-key", template]
    big = "9" * 4300  # as many digits as Python reads, far fewer than jsonb's numeric holds
    args = '{"output": {"big": ' + big + r', "tiny": 1e-300, "text": "\u00e9\ud83d\ude00"}}'
    assert (
        await cli("schedules", "add", "edge", "--actor", "probe", "--cron", "0 * * * *", "--args", args, *options) == 0
    )
    assert capsys.readouterr().err == ""
    row = await pool.fetchrow("SELECT * FROM schedules WHERE name = 'edge'")
    assert row is not None
    assert (row["jitter"], row["max_retries"], row["catchup_window"], row["lock_key"]) == (
        timedelta(minutes=25),
        100,
        timedelta(days=3650),
        template,
    )
    assert row["args"] == {"output": {"big": int(big), "tiny": 1e-300, "text": "\u00e9\U0001f600"}}


async def test_add_refuses_a_duplicate_name(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly()
    before = await pool.fetchrow("SELECT * FROM schedules")
    capsys.readouterr()

    assert await cli("schedules", "add", "nightly", "--actor", "probe", "--cron", "0 * * * *") == 2
    assert capsys.readouterr().err == (
        'punchclock: error: schedule "nightly" already exists (source: cli): pick another name, or delete it first\n'
    )
    assert await schedule_count(pool) == 1
    assert await pool.fetchrow("SELECT * FROM schedules") == before


async def test_usage_errors_exit_2(punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("schedules", "add", "x", "--cron", "* * * * *") == 2
    assert "the following arguments are required: --actor" in capsys.readouterr().err
    assert await cli("schedules", "add", "x", "--actor", "probe", "--cron", "* * * * *", "--max-retries", "three") == 2
    assert "argument --max-retries: invalid int value: 'three'" in capsys.readouterr().err
    assert await cli("schedules", "next", "x", "-n", "0") == 2
    assert "invalid -n 0: must be 1-1000" in capsys.readouterr().err
    assert await cli("--help") == 0


# pause, resume, delete ------------------------------------------------------------------------------------


async def test_pause_resume_delete(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly()
    assert await cli("schedules", "pause", "nightly") == 0
    assert await pool.fetchval("SELECT paused FROM schedules WHERE name = 'nightly'") is True
    assert 'paused schedule "nightly"' in capsys.readouterr().out

    assert await cli("schedules", "list") == 0
    assert " paused " in capsys.readouterr().out.splitlines()[2]

    assert await cli("schedules", "resume", "nightly") == 0
    assert 'resumed schedule "nightly": next fire ' in capsys.readouterr().out
    row = await pool.fetchrow("SELECT paused, next_fire_at FROM schedules WHERE name = 'nightly'")
    assert row is not None
    assert row["paused"] is False
    assert row["next_fire_at"] is not None

    await pool.execute(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state, finished_at)"
        " SELECT id, name, actor, now(), 'cron', 'succeeded', now() FROM schedules WHERE name = 'nightly'"
    )
    assert await cli("schedules", "delete", "nightly") == 0
    assert 'deleted schedule "nightly"; its runs keep their history' in capsys.readouterr().out
    assert await schedule_count(pool) == 0
    kept = await pool.fetchrow("SELECT schedule_id, schedule_name, state FROM runs")
    assert kept is not None
    assert tuple(kept) == (None, "nightly", "succeeded")

    for command in ("pause", "resume", "delete"):
        assert await cli("schedules", command, "nightly") == 2
        assert capsys.readouterr().err == (
            'punchclock: error: no schedule named "nightly": see punchclock schedules list\n'
        )


async def test_sync_and_migrate_report(punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("migrate") == 0
    assert capsys.readouterr().out == "database is up to date\n"
    assert await cli("schedules", "sync") == 0
    assert capsys.readouterr().out.startswith("synced 0 schedule(s)")


async def test_sync_also_syncs_code_knowledge_bases(
    punchclock_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PUNCHCLOCK_SCHEDULES_MODULE", "tests.e2e.kb_schedules")
    monkeypatch.setenv("TEST_KB_FOLDER", str(tmp_path))
    assert await cli("schedules", "sync") == 0
    out = capsys.readouterr().out
    assert "synced 1 schedule(s) from tests.e2e.kb_schedules: docs-reindex\n" in out
    assert "synced 1 knowledge base(s): docs\n" in out
    assert await cli("kb", "list", "--json") == 0
    assert [(kb["name"], kb["source"]) for kb in json.loads(capsys.readouterr().out)] == [("docs", "code")]


# trigger and runs -----------------------------------------------------------------------------------------


def purge_queue(name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(services.RABBITMQ_URL))
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing to purge
            return
        channel.queue_purge(name)
    finally:
        connection.close()


def take_messages(name: str) -> list[dict[str, Any]]:
    """Every message now on queue ``name``, acknowledged (so removed)."""
    connection = pika.BlockingConnection(pika.URLParameters(services.RABBITMQ_URL))
    messages = []
    try:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(name)
            if method is None:
                return messages
            messages.append(json.loads(body))
            channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()


async def test_trigger_publishes_a_manual_run(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly("--args", '{"output": {"from": "schedule"}}')
    await asyncio.to_thread(purge_queue, QUEUE)
    capsys.readouterr()

    assert await cli("schedules", "trigger", "nightly") == 0
    out = capsys.readouterr().out
    run_id = run_id_printed(out)
    assert out == f'run {run_id} of "nightly" enqueued (manual, probe)\n'
    assert await cli("schedules", "trigger", "nightly", "--args", '{"output": {"from": "cli"}}') == 0
    override_id = run_id_printed(capsys.readouterr().out)

    rows = await pool.fetch("SELECT id, trigger, state, actor, args, options, enqueued_at FROM runs ORDER BY id")
    assert [(r["id"], r["trigger"], r["state"], r["actor"]) for r in rows] == [
        (run_id, "manual", "enqueued", "probe"),
        (override_id, "manual", "enqueued", "probe"),
    ]
    assert [r["args"] for r in rows] == [{"output": {"from": "schedule"}}, {"output": {"from": "cli"}}]
    assert rows[0]["options"] == {
        "max_retries": 3,
        "min_backoff": 10_000,
        "max_backoff": 300_000,
        "time_limit": 1_500_000,
        "schedule_id": rows[0]["options"]["schedule_id"],
        "overlap": "skip",
        "lock_key": None,
        "retry_timeouts": False,
    }
    assert all(r["enqueued_at"] is not None for r in rows)

    messages = await asyncio.to_thread(take_messages, QUEUE)
    ours = {m["options"]["run_id"]: m for m in messages if m["options"].get("run_id") in (run_id, override_id)}
    assert sorted(ours) == [run_id, override_id]
    assert ours[run_id]["actor_name"] == "probe"
    assert ours[run_id]["kwargs"] == {"output": {"from": "schedule"}}
    assert ours[override_id]["kwargs"] == {"output": {"from": "cli"}}
    assert ours[run_id]["options"]["time_limit"] == 1_500_000

    assert await cli("schedules", "trigger", "nightly", "--args", "[]") == 2
    assert "invalid --args '[]': it is an array" in capsys.readouterr().err
    assert await cli("schedules", "trigger", "missing") == 2
    assert await pool.fetchval("SELECT count(*) FROM runs") == 2


async def test_trigger_args_merge_over_the_schedules_unless_replaced(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly("--args", '{"seconds": 1, "output": "schedule"}')
    await asyncio.to_thread(purge_queue, QUEUE)
    assert await cli("schedules", "trigger", "nightly", "--replace-args") == 2
    assert capsys.readouterr().err == (
        "punchclock: error: --replace-args needs --args JSON: the arguments to run with instead of the schedule's\n"
    )
    assert await pool.fetchval("SELECT count(*) FROM runs") == 0

    assert await cli("schedules", "trigger", "nightly", "--args", '{"output": "cli"}') == 0
    assert await cli("schedules", "trigger", "nightly", "--args", '{"output": "cli"}', "--replace-args") == 0
    assert [r["args"] for r in await pool.fetch("SELECT args FROM runs ORDER BY id")] == [
        {"seconds": 1, "output": "cli"},
        {"output": "cli"},
    ]
    await asyncio.to_thread(purge_queue, QUEUE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('{"seconds": NaN}', "NaN at args.seconds: PostgreSQL's jsonb has no NaN or Infinity"),
        ('{"seconds": Infinity}', "Infinity at args.seconds: PostgreSQL's jsonb has no NaN or Infinity"),
        ('{"seconds": -Infinity}', "-Infinity at args.seconds: PostgreSQL's jsonb has no NaN or Infinity"),
        (r'{"output": ["ok", "\u0000"]}', "a NUL character (\\u0000) in the string at args.output[1]"),
    ],
)
async def test_trigger_refuses_args_postgresql_cannot_store(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str], args: str, message: str
) -> None:
    await add_nightly()
    await asyncio.to_thread(purge_queue, QUEUE)
    capsys.readouterr()

    assert await cli("schedules", "trigger", "nightly", "--args", args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"punchclock: error: invalid --args {args!r}: {message}"), captured.err
    assert await pool.fetchval("SELECT count(*) FROM runs") == 0
    assert await asyncio.to_thread(take_messages, QUEUE) == []


async def test_trigger_refuses_args_the_actor_does_not_take(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly("--lock-key", "nightly:{output}", "--args", '{"output": "a"}')
    await asyncio.to_thread(purge_queue, QUEUE)
    capsys.readouterr()

    assert await cli("schedules", "trigger", "nightly", "--args", '{"nosuchparam": 1}') == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        'punchclock: error: invalid --args: args of schedule "nightly" do not fit: actor "probe" has no parameter'
        ' "nosuchparam": it takes seconds, fail_times, output, url, permanent, upstream, record; remove'
        ' "nosuchparam" from the args\n',
    )
    # the run's args are checked as the run gets them: merged over the schedule's, or alone with --replace-args
    assert await cli("schedules", "trigger", "nightly", "--replace-args", "--args", '{"seconds": 0}') == 2
    assert 'lock_key "nightly:{output}" names "output", which the args of schedule' in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM runs") == 0
    assert await asyncio.to_thread(take_messages, QUEUE) == []
    # --force takes no lease: the lock key's fields need not be there
    assert await cli("schedules", "trigger", "nightly", "--force", "--replace-args", "--args", '{"seconds": 0}') == 0
    assert await pool.fetchval("SELECT args FROM runs") == {"seconds": 0}
    assert await cli("schedules", "trigger", "nightly", "--args", '{"seconds": 0}') == 0  # output stays: a's key
    assert await pool.fetchval("SELECT args FROM runs ORDER BY id DESC LIMIT 1") == {"output": "a", "seconds": 0}


async def test_trigger_force_allows_overlap(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly("--overlap", "queue")
    await asyncio.to_thread(purge_queue, QUEUE)
    capsys.readouterr()

    assert await cli("schedules", "trigger", "nightly", "--force") == 0
    out = capsys.readouterr().out
    forced = run_id_printed(out)
    assert out == f'run {forced} of "nightly" enqueued (manual, forced, probe)\n'
    assert await cli("schedules", "trigger", "nightly") == 0
    plain = run_id_printed(capsys.readouterr().out)

    overlap = dict(await pool.fetch("SELECT id, options->>'overlap' FROM runs"))
    assert overlap == {forced: "allow", plain: "queue"}
    messages = await asyncio.to_thread(take_messages, QUEUE)
    assert {m["options"]["run_id"]: m["options"]["overlap"] for m in messages} == {forced: "allow", plain: "queue"}


async def test_runs_list_and_show(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_nightly()
    await pool.execute(
        "INSERT INTO runs (schedule_id, schedule_name, actor, args, scheduled_for, trigger, state, attempts,"
        "                  started_at, finished_at, error, output)"
        " SELECT id, name, actor, '{}', '2026-03-08T07:00:00Z', 'cron', 'failed', 2,"
        "        '2026-03-08T07:00:01Z', '2026-03-08T07:01:31Z', 'boom: it broke', '{\"partial\": true}'"
        " FROM schedules"
    )
    await pool.execute(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state, finished_at)"
        " SELECT id, name, actor, '2026-03-09T06:30:00Z', 'cron', 'succeeded', '2026-03-09T06:30:02Z' FROM schedules"
    )
    failed_id, succeeded_id = [r["id"] for r in await pool.fetch("SELECT id FROM runs ORDER BY id")]
    capsys.readouterr()

    assert await cli("runs", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "SCHEDULE",
        "ACTOR",
        "TRIGGER",
        "STATE",
        "SCHEDULED",
        "FOR",
        "DURATION",
        "ATTEMPTS",
        "ERROR",
    ]
    assert lines[2].split()[:6] == [
        str(succeeded_id),
        "nightly",
        "probe",
        "cron",
        "succeeded",
        "2026-03-09T02:30:00-04:00",
    ]
    assert lines[3].split() == [
        str(failed_id),
        "nightly",
        "probe",
        "cron",
        "failed",
        "2026-03-08T03:00:00-04:00",
        "1m30s",
        "2",
        "boom:",
        "it",
        "broke",
    ]

    assert await cli("runs", "list", "--state", "failed", "--schedule", "nightly", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["id"] == failed_id
    assert await cli("runs", "list", "--limit", "1", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [succeeded_id]
    assert await cli("runs", "list", "--schedule", "other", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert await cli("runs", "list", "--state", "exploded") == 2
    assert 'unknown run state "exploded": use one of scheduled' in capsys.readouterr().err

    assert await cli("runs", "show", str(failed_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        **shown,
        "id": failed_id,
        "schedule": "nightly",
        "trigger": "cron",
        "state": "failed",
        "attempts": 2,
        "scheduled_for": "2026-03-08T07:00:00.000Z",
        "started_at": "2026-03-08T07:00:01.000Z",
        "finished_at": "2026-03-08T07:01:31.000Z",
        "duration_seconds": 90.0,
        "start_delay_seconds": 1.0,
        "error": "boom: it broke",
        "output": {"partial": True},
    }
    assert await cli("runs", "show", str(failed_id)) == 0
    out = capsys.readouterr().out
    for expected in (
        "state:          failed",
        "started:        2026-03-08T03:00:01-04:00",
        "duration:       1m30s",
        'output:         {"partial": true}',
        "Error\nboom: it broke\n",
    ):
        assert expected in out, out

    assert await cli("runs", "show", "999999") == 2
    assert capsys.readouterr().err == "punchclock: error: no run with id 999999: see punchclock runs list\n"


# the console script ---------------------------------------------------------------------------------------


async def test_console_script_exit_codes(punchclock_env: dict[str, str]) -> None:
    code, out, err = await run_console_script("runs", "show", "999999")
    assert (code, out, err) == (2, "", "punchclock: error: no run with id 999999: see punchclock runs list\n")

    code, out, err = await run_console_script(
        "schedules", "list", PUNCHCLOCK_DATABASE_URL="postgresql://punchclock@127.0.0.1:1/nowhere"
    )
    assert code == 1
    assert out == ""
    assert err.startswith("punchclock: error: cannot connect to PostgreSQL at postgresql://punchclock@127.0.0.1:1/")
    assert "check PUNCHCLOCK_DATABASE_URL" in err


async def test_output_cut_short_by_its_reader_is_no_error(punchclock_env: dict[str, str], pool: Pool) -> None:
    """``punchclock runs show N | head -1``: head leaves after one line, and the rest of the output (a megabyte,
    more than a pipe holds) has no reader. No traceback; the exit code a shell gives a writer killed by SIGPIPE."""
    await add_nightly()
    run_id = await pool.fetchval(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state, finished_at, output)"
        " SELECT id, name, actor, now(), 'cron', 'succeeded', now(), jsonb_build_object('text', repeat('x', 1000000))"
        " FROM schedules RETURNING id"
    )
    for command in (f"runs show {run_id}", f"runs show {run_id} --json", "runs list --json"):
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{PUNCHCLOCK} {command} | head -1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert (stderr.decode(), process.returncode) == ("", 141), command
        assert stdout.decode().count("\n") == 1, command


async def test_trigger_with_rabbitmq_down_keeps_the_run(punchclock_env: dict[str, str], pool: Pool) -> None:
    """The run is committed before publishing: with the broker unreachable it waits for the next tick."""
    await add_nightly()
    code, out, err = await run_console_script(
        "schedules", "trigger", "nightly", PUNCHCLOCK_BROKER_URL=UNREACHABLE_BROKER
    )
    assert code == 0, err
    run_id = run_id_printed(out)
    assert f"punchclock: warning: could not publish run {run_id}: RabbitMQ unreachable" in err
    assert "the next tick publishes it. Check PUNCHCLOCK_BROKER_URL (127.0.0.1:1/%2F)" in err
    assert "guest" not in err
    row = await pool.fetchrow("SELECT trigger, state FROM runs WHERE id = $1", run_id)
    assert row is not None
    assert tuple(row) == ("manual", "scheduled")


async def test_trigger_with_the_dev_broker_only_records(punchclock_env: dict[str, str], pool: Pool) -> None:
    """``memory://`` is the broker inside a running ``punchclock dev``: this process must not publish."""
    await add_nightly()
    code, out, err = await run_console_script("schedules", "trigger", "nightly", PUNCHCLOCK_BROKER_URL="memory://")
    assert (code, err) == (0, "")
    run_id = run_id_printed(out)
    assert out == (
        f'run {run_id} of "nightly" recorded (manual, probe); the running punchclock dev publishes it within a second\n'
    )
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", run_id) == "scheduled"
