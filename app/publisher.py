"""Publishing run messages through the Dramatiq broker.

Synchronous on purpose: pika's connections are per thread, so the clock calls :meth:`Publisher.publish` from a
worker thread (``asyncio.to_thread``) and never blocks the event loop that the database pool lives on.

With publisher confirms on, each publish waits for RabbitMQ's ack (about 1 ms here), so one thread tops out near
1,000-2,000 messages/s. A batch is therefore spread over ``threads`` sending threads, each with its own
connection (Dramatiq keeps one per thread), so the acks of several channels overlap. Confirms stay on: a run is
marked ``enqueued`` only once RabbitMQ has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound

# Below this many messages a batch is sent on the calling thread: a hand-off would cost more than it saves.
PARALLEL_FROM = 8


@dataclass
class PublishOutcome:
    """What a batch came to: ids sent, ids whose actor is unknown here (with why), and the error that
    stopped sending early, if any (the runs not sent stay unpublished for the next tick)."""

    published: list[int] = field(default_factory=list)
    unpublishable: list[tuple[int, str]] = field(default_factory=list)
    error: BaseException | None = None


def run_message(run: Mapping[str, Any], queue_name: str) -> dramatiq.Message[Any]:
    """The message for one run: its args as keyword arguments, its frozen options plus its id."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=run["actor"],
        args=(),
        kwargs=dict(run["args"]),
        options={**run["options"], "run_id": run["id"]},
    )


class Publisher:
    def __init__(self, broker: dramatiq.Broker, *, threads: int) -> None:
        self.broker = broker
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    def publish(self, runs: Sequence[Mapping[str, Any]]) -> PublishOutcome:
        outcome = PublishOutcome()
        messages: list[tuple[int, int, dramatiq.Message[Any]]] = []
        for run in runs:
            try:
                actor = self.broker.get_actor(run["actor"])
            except ActorNotFound:
                outcome.unpublishable.append(
                    (
                        run["id"],
                        f'actor "{run["actor"]}" is not registered in this deployment:'
                        " add it under actors/ or point the schedule at another actor",
                    )
                )
                continue
            messages.append((run["id"], run.get("delay_ms") or 0, run_message(run, actor.queue_name)))
        if len(messages) < PARALLEL_FROM or self.threads == 1:
            sent = [self._send(messages)]
        else:
            sent = list(
                self._sending_threads().map(self._send, [messages[i :: self.threads] for i in range(self.threads)])
            )
        for published, error in sent:
            outcome.published.extend(published)
            outcome.error = outcome.error or error
        return outcome

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def _sending_threads(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="punchclock-publish")
        return self._executor

    def _send(
        self, messages: Sequence[tuple[int, int, dramatiq.Message[Any]]]
    ) -> tuple[list[int], BaseException | None]:
        """Send in order (each after its jitter delay, in ms); stop at the first failure (broker down) and say
        which were sent."""
        published: list[int] = []
        for run_id, delay_ms, message in messages:
            try:
                self.broker.enqueue(message, delay=delay_ms or None)
            except Exception as exc:
                return published, exc
            published.append(run_id)
        return published, None
