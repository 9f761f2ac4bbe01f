"""Overlapping the pipeline's stages: work ahead of the model (decoding, preparation) and behind it (blending,
encoding) in threads, through bounded queues, so memory stays bounded and an error anywhere stops the run.

Errors raised in a thread (``BaseException``, ``KeyboardInterrupt`` included) are raised again in the calling
thread at its next exchange with the queue; leaving either ``with`` block stops and joins its thread, whatever
the reason, so nothing hangs and no thread outlives the run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
#: Seconds between checks of the other side while waiting on a queue.
_POLL = 0.05
_DONE = object()


class Ahead(Generic[T]):
    """Iterate ``items`` in a thread, at most ``depth`` items ahead of the consumer: ``with Ahead(it, 2) as
    items: for item in items: ...``. Its errors are raised in the consumer; leaving the block stops it.
    ``threaded=False`` iterates in the caller's thread instead (same items, same errors)."""

    def __init__(self, items: Iterator[T], depth: int, threaded: bool = True) -> None:
        self._items, self._threaded = items, threaded
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genface-ahead", daemon=True)

    def _put(self, entry: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    return
            self._put((False, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put((False, exc))

    def __enter__(self) -> Iterator[T]:
        if not self._threaded:
            return self._items
        self._thread.start()
        return self._consume()

    def _consume(self) -> Iterator[T]:
        while True:
            ok, item = self._queue.get()
            if ok:
                yield item
            elif item is _DONE:
                return
            else:
                raise item

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._threaded:
            self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class Behind:
    """Call ``consume(item)`` in a thread for each item ``put``, at most ``depth`` waiting: ``with
    Behind(f, 2) as behind: behind.put(x)``. Its errors are raised at the next ``put`` or on leaving the block,
    which waits for the items put to be consumed (or, when leaving on an error, drops them). ``threaded=False``
    consumes each item in ``put`` instead."""

    def __init__(self, consume: Callable[[Any], None], depth: int, threaded: bool = True) -> None:
        self._consume, self._threaded = consume, threaded
        self._queue: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="genface-behind", daemon=True)

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=_POLL)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if item is _DONE:
                    return
                self._consume(item)
        except BaseException as exc:  # noqa: BLE001 - raised again in the producer
            self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Any) -> None:
        if not self._threaded:
            self._consume(item)
            return
        while True:
            self._raise()
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def __enter__(self) -> Behind:
        if self._threaded:
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if not self._threaded:
            return
        if exc_type is None:
            self.put(_DONE)
            self._thread.join()
            self._raise()
        else:
            self._stop.set()
            while self._thread.is_alive():  # unblock it if it waits on a full queue, then let it see the stop
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(_POLL)
