"""``punchclock dev``: the whole product in one process, for trying it and for demos. No Docker, no RabbitMQ.

The embedded PostgreSQL (unless ``PUNCHCLOCK_DATABASE_URL`` is set), Dramatiq's in-memory broker with worker
threads and the full middleware stack, and a ticker thread in place of periodiq that runs the same ``tick``
every second (so runs recorded by ``punchclock schedules trigger`` in another terminal start within a second).
Ctrl-C stops the ticker, lets running actors finish (up to ``DEV_STOP_WAIT_SECONDS``), and exits 0, whatever
became of stdout (``make dev | tee dev.log`` loses tee to the same Ctrl-C); a second Ctrl-C exits at once. Runs
not finished by then are handed back: the next ``punchclock dev`` takes them over at its start, as it takes over
those of a dev that was killed (app/dev_handover.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType

from app import dev_handover, dev_lock
from app.broker import MEMORY_BROKER
from app.console import say
from app.redaction import redact, redact_url

logger = logging.getLogger(__name__)

TICK_EVERY_SECONDS = 1.0
DEV_WORKER_THREADS = 4
# How long Ctrl-C waits for running actors before the process exits without them.
DEV_STOP_WAIT_SECONDS = 10


def run_dev() -> int:
    # The one place that chooses the broker for the user: dev mode is in-memory by definition.
    os.environ["PUNCHCLOCK_BROKER_URL"] = MEMORY_BROKER
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: whatever the first is waiting for, the user wants out now
            # os.write, not print: the main thread may be inside a print, which a print here would break off
            # with "reentrant call" before the exit.
            with contextlib.suppress(OSError):
                os.write(2, f"punchclock dev: {signal.Signals(signum).name} again, exiting now\n".encode())
            os._exit(128 + signum)
        stop.set()

    # Before anything starts: a Ctrl-C during start-up stops what has started, through the same finally.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    import dramatiq

    from app import actors as wiring
    from app import clock
    from app.db.pool import database_url
    from app.tracing import shutdown_tracing, tracer_from

    ticks = tracer_from(wiring.tracer_provider, "punchclock.clock")

    settings = wiring.settings
    # Before the database: a second dev on this data directory is refused having touched nothing. Held until the
    # process ends; while it is, the CLI in another terminal leaves runs to this dev's ticker (app/cli/main.py).
    dev_lock.claim(settings.data_dir)
    url = database_url(settings)  # starts the embedded server now, so its location can be printed
    where = (settings.database_url and "PUNCHCLOCK_DATABASE_URL") or f"embedded PostgreSQL in {settings.pgdata}"
    worker = dramatiq.Worker(wiring.broker, worker_threads=DEV_WORKER_THREADS)
    try:
        worker.start()  # boots the middleware: opens the pool, migrates, syncs schedules.py
        # Before the first tick: what a previous dev left (its queued messages, its attempts) goes back to work.
        taken = wiring.database.run(
            lambda pool: dev_handover.take_over(pool, wiring.recovery, batch=settings.tick_batch)
        )

        say("punchclock dev: running")
        say(f"  database   {where} ({redact_url(url.split('?')[0])})")
        say(f"  broker     Dramatiq in-memory broker, {DEV_WORKER_THREADS} worker threads")
        say(f"  clock      a ticker thread, every {TICK_EVERY_SECONDS:g} s (periodiq is not needed)")
        names = ", ".join(s.name for s in wiring.schedules) or "none"
        say(f"  schedules  from {settings.schedules_module or '(none)'}.py: {names}")
        if taken.total:
            say(f"  resumed    {taken.total} run(s) the last dev did not finish: {taken.text()}")
        say("  try        punchclock schedules list   |   punchclock runs list   |   Ctrl-C to stop")

        while not stop.wait(TICK_EVERY_SECONDS):
            try:
                with ticks.start_as_current_span("tick"):  # as the worker's Tracing middleware names it
                    wiring.database.run(
                        lambda pool: clock.tick(
                            pool, wiring.publisher, batch=settings.tick_batch, recovery=wiring.recovery
                        )
                    )
            except Exception as exc:  # a failed tick is retried by the next one; say why and keep going
                say(f"punchclock dev: tick failed: {redact(str(exc))}", err=True)
    finally:
        # Whatever happened above (a failed start, a closed stdout), the worker is stopped: its threads would
        # otherwise keep the process alive.
        say(f"punchclock dev: stopping (waiting up to {DEV_STOP_WAIT_SECONDS} s for running actors)")
        worker.stop(timeout=DEV_STOP_WAIT_SECONDS * 1000)
        shutdown_tracing(wiring.tracer_provider)
        # Not lost: still queued or running past the wait, they are left as they are, for the next start to take
        # over (app/dev_handover.py).
        handed_back = dev_handover.unfinished(url)
        logger.info("punchclock dev stopped", extra={"action": "dev_stopped", "handed_back": handed_back})
        if handed_back is None:
            say("punchclock dev: stopped; runs not finished, if any, are taken over by the next punchclock dev")
        else:
            say(f"punchclock dev: stopped; {handed_back} run(s) not finished handed back to the next punchclock dev")
    return 0
