"""Prepare the next batches in a background thread while the current step runs.

The training loop reads every loss value back each step, which waits for the GPU; a
batch fetched only after that leaves the GPU idle for the whole gather. A thread that
keeps ``depth`` batches ready removes that idle time: the gather from the memory-mapped
store is a numpy copy, which releases the GIL (and pinning, on CUDA, is a copy too).

Hand-written rather than torch's DataLoader workers: those are processes that each
re-open the store and draw their own sample order, which would change the seeded,
resumable order of :class:`mmssl.train.loader.BatchLoader`; a thread consumes one iterator in
order, so the batches are exactly those of the plain loop.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield the items of ``items`` in order while a daemon thread prepares up to ``depth``
    more (``depth`` 0: no thread). An exception in the producer is raised here; closing
    the generator early (``break``) stops the thread."""
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))

    thread = threading.Thread(target=produce, name="mmssl-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
