"""A cache shared by every viewer of one server process, bounded in bytes (not entries).

Streamlit's caches bound the number of entries, so a few large columns can take any amount of memory, and
st.cache_data hands every caller its own copy. This one keeps the values themselves (frames are never
modified after they are made), counts their bytes, and drops the least recently used ones past the bound:
$TDS_CACHE_MB megabytes per server process (default 512). A value larger than the whole bound is returned
but not kept.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, TypeVar

import numpy as np
import polars as pl

ENV_VAR = "TDS_CACHE_MB"
DEFAULT_MB = 512
P = ParamSpec("P")
T = TypeVar("T")


def size_of(value: Any) -> int:
    """Bytes a cached value holds: frames and arrays by their buffers, containers by what they hold."""
    if isinstance(value, (pl.DataFrame, pl.Series)):
        return int(value.estimated_size())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(size_of(k) + size_of(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + sum(size_of(v) for v in value)
    return sys.getsizeof(value)


class ByteCache:
    """Least recently used entries go first once the values' bytes pass `max_bytes`; safe across threads."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = make()  # outside the lock: other viewers are not held up (two may make the same value once)
        size = size_of(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, size)
                self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def bound() -> tuple[int, str | None]:
    """The bound in bytes from $TDS_CACHE_MB, and a line saying why the default is used where it is unusable."""
    text = os.environ.get(ENV_VAR, str(DEFAULT_MB))
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0:
        return DEFAULT_MB * 2**20, f"{ENV_VAR}={text!r} is not a positive number of megabytes; using {DEFAULT_MB}"
    return int(megabytes * 2**20), None


CACHE = ByteCache(bound()[0])


def cached(fn: Callable[P, T]) -> Callable[P, T]:
    """Cache `fn` in CACHE, keyed on its file, name and (hashable) arguments."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        key = (fn.__code__.co_filename, fn.__qualname__, args, tuple(sorted(kwargs.items())))
        return CACHE.get(key, lambda: fn(*args, **kwargs))

    return wrapper
