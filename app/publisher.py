"""Publishing run messages through the Dramatiq broker.

Synchronous on purpose: pika's connections are per thread, so the clock calls :meth:`Publisher.publish` from a
worker thread (``asyncio.to_thread``) and never blocks the event loop that the database pool lives on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound


@dataclass
class PublishOutcome:
    """What a batch came to: ids sent, ids whose actor is unknown here (with why), and the error that
    stopped the batch early, if any (the runs after it stay unpublished for the next tick)."""

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
    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def publish(self, runs: Sequence[Mapping[str, Any]]) -> PublishOutcome:
        outcome = PublishOutcome()
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
            try:
                self.broker.enqueue(run_message(run, actor.queue_name))
            except Exception as exc:  # broker down: keep what was sent, leave the rest to the outbox
                outcome.error = exc
                break
            outcome.published.append(run["id"])
        return outcome
