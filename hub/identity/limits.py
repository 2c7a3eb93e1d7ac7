"""Failed logins per client address in a sliding window, in memory: a guesser spraying one password over many
accounts from one address is slowed though no single account reaches its lockout. In memory on purpose — a restart
forgets it, which only gives back one window — and bounded, so a flood of addresses cannot grow it without limit."""

from collections import OrderedDict, deque

__all__ = ["FailureWindow"]


class FailureWindow:
    """At most ``max_failures`` per key in any ``window_s`` seconds; ``max_keys`` keys are kept (oldest dropped)."""

    def __init__(self, *, max_failures: int, window_s: float, max_keys: int = 100_000) -> None:
        if max_failures < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError(f"need max_failures >= 1, window_s > 0, max_keys >= 1; got {max_failures}, "
                             f"{window_s}, {max_keys}")  # fmt: skip
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, key: str, now_s: float) -> float | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now_s - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < self.max_failures:
            return None
        return times[0] + self.window_s - now_s

    def fail(self, key: str, now_s: float) -> None:
        times = self._failures.setdefault(key, deque(maxlen=self.max_failures))
        times.append(now_s)
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
