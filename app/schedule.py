"""A schedule's definition and its validation.

A :class:`Schedule` is what a user declares, in ``schedules.py`` or through ``punchclock schedules add``.
:func:`Schedule.validated` checks everything at definition time (unknown actor, bad cron, unknown time zone,
bad durations, args the actor's function does not take, a lock key naming a field the args lack) so that nothing
invalid reaches the database and the tick never meets a bad schedule. The options are declared once, on their
fields, with :func:`app.schedule_options.option`; :data:`OPTIONS` lists them for everything derived from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from app.actor_args import UPSTREAM, ActorParams, KnownActors
from app.consumer_timeout import CONSUMER_TIMEOUT, MAX_DELAY
from app.cron import validate_cron, validate_timezone
from app.durations import format_duration
from app.errors import InvalidInput
from app.jsonb import jsonb_problem
from app.misfire import Misfire, parse_misfire
from app.notify.targets import parse_target
from app.overlap import MAX_TEMPLATE_LENGTH, Overlap, missing_lock_key_fields, parse_overlap, validate_lock_key
from app.schedule_options import (
    DURATION,
    INT,
    MISFIRE,
    NAMES,
    SWITCH,
    TEXT,
    Values,
    declared_options,
    message_values,
    option,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
# Each retry waits at least min_backoff: a hundred is already days of retrying at the 30m backoff cap, and
# the column is a PostgreSQL integer, which a larger number could overflow.
MAX_RETRIES = 100
# A catch-up window reaches back from now; much further than this and the tick's date arithmetic overflows
# (year 1). Instants older than a few years are history: backfill them instead.
MAX_CATCHUP_WINDOW = timedelta(days=3650)


@dataclass(frozen=True)
class Schedule:
    """One schedule. Durations are timedeltas; ``timezone`` is an IANA name; ``cron`` is 5 fields or an alias."""

    name: str
    actor: str
    cron: str | None
    args: Mapping[str, Any] = field(default_factory=dict)
    # The options: each declared once, here; the CLI flag, the column, the message option and the JSON output
    # derive from the declaration (app/schedule_options.py). A new one needs a migration adding its column.
    # ``paused`` is not one: the CLI, the code sync and the tick treat it each their own way.
    timezone: str = option("UTC", TEXT, "IANA time zone the cron is read in (default UTC)", metavar="TZ", flag="--tz")
    paused: bool = False
    misfire: Misfire = option(
        Misfire.LATEST, MISFIRE, "what to do with instants missed (default latest)", metavar="skip|latest|all"
    )
    catchup_window: timedelta = option(
        timedelta(hours=1), DURATION, "how far back missed instants still fire (default 1h)", metavar="DUR"
    )
    overlap: str = option(
        "skip", TEXT, "while a run still holds the lock (default skip)", metavar="skip|queue|allow", message="overlap"
    )
    lock_key: str | None = option(
        None,
        TEXT,
        'share one lock across schedules: text and {arg} fields, e.g. "reindex:{kb}"'
        f" (at most {MAX_TEMPLATE_LENGTH} characters)",
        metavar="TEMPLATE",
        message="lock_key",
    )
    max_retries: int = option(
        3, INT, f"retries of a transient failure, 0-{MAX_RETRIES} (default 3)", metavar="N", message="max_retries"
    )
    min_backoff: timedelta = option(
        timedelta(seconds=10),
        DURATION,
        "backoff before the first retry (default 10s)",
        metavar="DUR",
        message="min_backoff",
    )
    max_backoff: timedelta = option(
        timedelta(minutes=5),
        DURATION,
        "longest backoff, at most 30m (default 5m)",
        metavar="DUR",
        message="max_backoff",
    )
    timeout: timedelta = option(
        timedelta(minutes=25),
        DURATION,
        "a run past it is timed_out; at most 30m (default 25m)",
        metavar="DUR",
        message="time_limit",
    )
    jitter: timedelta = option(
        timedelta(0),
        DURATION,
        f"start each run after a random delay up to this, at most {format_duration(MAX_DELAY)} (default 0s)",
        metavar="DUR",
    )
    notify: tuple[str, ...] = option(
        (),
        NAMES,
        "on final failure or timeout: webhook:URL, slack:URL, feishu:URL, dingtalk:URL, wecom:URL or"
        " mailto:ADDRESS (repeatable)",
        metavar="TARGET",
        # webhook URLs are credentials; stored entries were judged when defined (link-local hosts included)
        json=lambda entries: [parse_target(entry, allow_link_local=True).masked for entry in entries],
    )
    after: tuple[str, ...] = option((), NAMES, "run when this schedule's run succeeds (repeatable)", metavar="NAME")
    description: str = option("", TEXT, None, metavar="TEXT")
    retry_timeouts: bool = option(False, SWITCH, "retry an attempt that timed out", message="retry_timeouts")
    notify_on_recovery: bool = option(False, SWITCH, "also notify on the first success after failures")

    def validated(self, known_actors: KnownActors, *, allow_link_local: bool = False) -> Schedule:
        """This schedule with its cron normalised, or :class:`InvalidInput` naming the bad value and the fix.

        ``known_actors``: the names a schedule may target; a mapping to each actor's :class:`ActorParams` (as
        ``app/actors.py`` builds it) has the args checked against the actor's parameters too.
        ``allow_link_local`` (``PUNCHCLOCK_NOTIFY_ALLOW_LINK_LOCAL``) lets notify targets reach link-local hosts."""
        if not _NAME.match(self.name):
            raise InvalidInput(
                f'invalid schedule name "{self.name}": use 1-100 letters, digits, "_", ".", ":" or "-",'
                " starting with a letter or digit"
            )
        if self.actor not in known_actors:
            choices = ", ".join(sorted(known_actors)) or "none registered"
            raise InvalidInput(f'unknown actor "{self.actor}" for schedule "{self.name}": known actors are {choices}')
        if self.cron is None and not self.after:
            raise InvalidInput(f'schedule "{self.name}" needs a cron expression (or upstream schedules in after)')
        cron = validate_cron(self.cron) if self.cron is not None else None
        validate_timezone(self.timezone)
        misfire = parse_misfire(str(self.misfire))
        if not isinstance(self.args, Mapping):
            raise InvalidInput(f'args of schedule "{self.name}" must be a JSON object, got {type(self.args).__name__}')
        try:
            args = json.loads(json.dumps(self.args))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f'args of schedule "{self.name}" are not JSON: {exc}') from None
        problem = jsonb_problem(args, "args")
        if problem:
            raise InvalidInput(f'args of schedule "{self.name}" cannot be stored: {problem}')
        overlap = str(parse_overlap(self.overlap))
        if self.lock_key is not None:
            validate_lock_key(self.lock_key)
        params = known_actors.get(self.actor) if isinstance(known_actors, Mapping) else None
        self.check_args(args, params, overlap=Overlap(overlap), engine_args=(UPSTREAM,) if self.after else ())
        if self.max_retries < 0:
            raise InvalidInput(f"invalid max_retries {self.max_retries}: must be 0 or more")
        if self.max_retries > MAX_RETRIES:
            raise InvalidInput(
                f'invalid max_retries {self.max_retries} for schedule "{self.name}": must be at most {MAX_RETRIES};'
                " a transient failure still failing after that many retries needs a look, not another retry"
            )
        for label, value in (
            ("catchup_window", self.catchup_window),
            ("min_backoff", self.min_backoff),
            ("jitter", self.jitter),
        ):
            if value < timedelta(0):
                raise InvalidInput(f"invalid {label} {format_duration(value)}: must not be negative")
        if self.catchup_window > MAX_CATCHUP_WINDOW:
            raise InvalidInput(
                f'invalid catchup_window {format_duration(self.catchup_window)} for schedule "{self.name}": must be'
                f" at most {format_duration(MAX_CATCHUP_WINDOW)}; fire older instants with punchclock schedules"
                " backfill"
            )
        for label, value in (("timeout", self.timeout), ("max_backoff", self.max_backoff)):
            if not timedelta(0) < value <= CONSUMER_TIMEOUT:
                raise InvalidInput(
                    f'invalid {label} {format_duration(value)} for schedule "{self.name}": must be above 0 and at most'
                    f" {format_duration(CONSUMER_TIMEOUT)}, RabbitMQ's consumer_timeout (raise it on the broker"
                    " first, see docs/operations.md)"
                )
        if self.jitter > MAX_DELAY:
            raise InvalidInput(
                f'invalid jitter {format_duration(self.jitter)} for schedule "{self.name}": must be at most'
                f" {format_duration(MAX_DELAY)}: a run waits out its jitter as a message held unacknowledged, which"
                f" RabbitMQ redelivers once held past its consumer_timeout ({format_duration(CONSUMER_TIMEOUT)} by"
                " default, less a margin); to go higher, raise consumer_timeout on the broker first"
                " (see docs/operations.md)"
            )
        if self.min_backoff > self.max_backoff:
            raise InvalidInput(
                f"min_backoff {format_duration(self.min_backoff)} is above max_backoff"
                f" {format_duration(self.max_backoff)}"
            )
        notify = tuple(parse_target(entry, allow_link_local=allow_link_local).entry for entry in self.notify)
        return replace(
            self, cron=cron, misfire=misfire, args=args, notify=notify, after=tuple(self.after), overlap=overlap
        )

    def check_args(
        self,
        args: Mapping[str, Any],
        params: ActorParams | None,
        *,
        overlap: Overlap,
        engine_args: Collection[str] = (),
    ) -> None:
        """:class:`InvalidInput` unless a run of this schedule with ``args`` (plus ``engine_args``, which the
        engine fills in) can start: its lock key's fields are among the args (when it takes a lease, ``overlap``
        not allow), and, when the actor's ``params`` are known, the actor's function takes them."""
        if UPSTREAM in engine_args and UPSTREAM in args:
            raise InvalidInput(
                f'args of schedule "{self.name}" set "{UPSTREAM}", which the engine sets for a schedule with after'
                " (the upstream outputs, by schedule name): remove it from the args"
            )
        if params is not None:
            try:
                params.check(args, engine_args=engine_args)
            except InvalidInput as exc:
                raise InvalidInput(f'args of schedule "{self.name}" do not fit: {exc}') from None
        templates = [("", self.lock_key)]
        if self.lock_key is None and params is not None:
            templates.append((f' of actor "{self.actor}"', params.lock_key))
        for whose, template in templates if overlap is not Overlap.ALLOW else ():
            missing = [] if template is None else missing_lock_key_fields(template, args)
            if missing:
                have = ", ".join(sorted(args)) or "none"
                raise InvalidInput(
                    f'lock_key "{template}"{whose} names "{missing[0]}", which the args of schedule "{self.name}"'
                    f' lack (they have {have}): add "{missing[0]}" to the args or change the lock key; a lock key is'
                    " filled from the run's args, never from the actor's default values"
                )

    def message_options(self, schedule_id: int | None) -> dict[str, Any]:
        return message_options(schedule_id, {spec.name: getattr(self, spec.name) for spec in OPTIONS})


# Every option declared above, in field order.
OPTIONS = declared_options(Schedule)


def message_options(schedule_id: int | None, values: Values) -> dict[str, Any]:
    """The options a run is published with, from its schedule's option ``values`` (a ``schedules`` row or a
    schedule's fields): Dramatiq's own (milliseconds, as Dramatiq wants) and ours, which the worker's
    middleware reads (overlap policy and lock key, whether a timeout is retried)."""
    return {**message_values(OPTIONS, values), "schedule_id": schedule_id}
