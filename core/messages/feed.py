"""Wake-ups for the `newMessages` subscription.

The database is the truth: a subscriber reads its new recipient rows from it. This only
wakes the subscribers of this process at once when a message is committed here; messages
written by another process (the worker's in-app deliveries, a second API instance) are
found by the subscriber's periodic look, a few seconds later.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class MessageFeed:
    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)

    def publish(self, person_ids: Iterable[int]) -> None:
        """Wake every subscriber of these persons (call after the commit)."""
        for person_id in person_ids:
            for event in self._waiters.get(person_id, ()):
                event.set()

    @contextmanager
    def subscribe(self, person_id: int) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters[person_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(person_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[person_id]

    def subscriber_count(self, person_id: int) -> int:
        return len(self._waiters.get(person_id, ()))


# One per process: subscribers and senders of one process share it.
feed = MessageFeed()
