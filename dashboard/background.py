"""Work done once per server process in one background thread, one item at a time, its result kept for good.

The dashboard computes the aggregate tables of a run that stores none (written before stored tables existed,
or by a tool that writes format v1 without them) from the run's positions: seconds per million positions. Done
in a page, every viewer of the page would wait for every such run it shows, and several pages at once would
hold several runs' positions in memory. Here one worker thread computes the runs in the order they are asked
for (a page's own runs first), one at a time, so memory holds one run's positions at a time; a page asks, waits
a moment, and shows what is ready. Each key is computed once (its error too) for the life of the process. The
thread starts when there is work and ends when there is none.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, wait
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Computations(Generic[K, T]):
    """compute(key) for each key asked for, once, in one worker thread; results as futures."""

    def __init__(self, compute: Callable[[K], T], name: str = "tds-background"):
        self._compute = compute
        self._name = name
        self._lock = threading.Lock()
        self._futures: dict[K, Future[T]] = {}
        self._queue: deque[K] = deque()
        self._worker: threading.Thread | None = None

    def ask(self, keys: Iterable[K], first: bool = False) -> list[Future[T]]:
        """The future of each key, queueing those not asked for before: at the back, or with `first` at the
        front in the order given (a page's own runs go before runs another page asked for and still waits on)."""
        keys = list(keys)
        with self._lock:
            waiting = list(dict.fromkeys(key for key in keys if key not in self._futures or key in self._queue))
            for key in waiting:
                self._futures.setdefault(key, Future())
            if first:
                for key in waiting:
                    if key in self._queue:
                        self._queue.remove(key)
                self._queue.extendleft(reversed(waiting))
            else:
                self._queue.extend(key for key in waiting if key not in self._queue)
            if self._queue and self._worker is None:
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
            return [self._futures[key] for key in keys]

    def wait(self, keys: Iterable[K], timeout: float, first: bool = True) -> list[K]:
        """Ask for `keys` (at the front), wait at most `timeout` seconds for them, and return those not done."""
        keys = list(keys)
        futures = self.ask(keys, first=first)
        if futures:
            wait(futures, timeout=timeout)
        return [key for key, future in zip(keys, futures, strict=True) if not future.done()]

    def done(self, key: K) -> bool:
        """Whether `key` has been computed (or failed); False where it was never asked for."""
        with self._lock:
            future = self._futures.get(key)
        return future is not None and future.done()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                key = self._queue.popleft()
                future = self._futures[key]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._compute(key))
            except Exception as err:  # noqa: BLE001  (kept as the key's result: the page names the file)
                future.set_exception(err)
