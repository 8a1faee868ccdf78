"""Retries of the upload flows: the back-off policy, the typed error for an unexpected answer, and
:class:`Retrier`, which runs a sub-flow again after retryable failures and reports each wait
(:class:`RetryNotice`) so that a caller can show it ("retrying in 2 s (3/8): connection refused").

A server that never answered fails fast: while no request of an upload has been answered, a
:class:`~chunkd.client.errors.CannotConnect` is retried only ``connect_retries`` times (a few seconds), so
``chunkd upload`` against a stopped server ends with one clear line instead of a minute of silent back-off.
Once the server has answered, the same failure is a server restarting mid-upload and gets the full budget.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from chunkd.client._errtext import protocol_message
from chunkd.client.errors import (
    AuthError,
    CannotConnect,
    ConnectionFailed,
    NotFoundError,
    ServerError,
    SessionLost,
    TransferError,
)

T = TypeVar("T")
Step = Any  # httpx.Request | Sleep | Digest | Parallel
Flow = Generator[Step, Any, T]


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter; ``Retry-After`` raises the delay (up to ``max_retry_after``).

    ``max_retries`` counts consecutive failed rounds *without progress*: a round in which the server
    received new bytes resets the count, so a long upload over a flaky link never gives up while it moves.
    ``connect_retries`` bounds the retries of a connection that cannot be opened before the server has
    answered any request of the upload (0.25-3.5 s of waiting with the defaults).
    """

    max_retries: int = 8
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    connect_retries: int = 3

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** attempt))
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return float(wait)


@dataclass(frozen=True)
class RetryNotice:
    """One wait before a retry: ``attempt`` of at most ``limit``, after ``delay`` seconds, because of ``reason``."""

    name: str
    attempt: int
    limit: int
    delay: float
    reason: str
    error: BaseException


RetryCallback = Callable[[RetryNotice], None]


def reason_of(exc: BaseException) -> str:
    """A few words for why a step failed: ``connection refused``, ``HTTP 503: ServerBusy: ...``."""
    if isinstance(exc, ConnectionFailed):
        return exc.reason
    return str(exc)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for(response: httpx.Response, what: str, *, retryable: bool | None = None) -> ServerError:
    """The typed error for an unexpected response; its message is the protocol's ``code: message``."""
    text = protocol_message(response)
    message = f"{what}: {text}" if text else what
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    status = response.status_code
    if status in (401, 403):
        return AuthError(status, message, retry_after=retry_after, retryable=False)
    if status in (404, 410):
        return NotFoundError(status, message, retry_after=retry_after, retryable=retryable)
    return ServerError(status, message, retry_after=retry_after, retryable=retryable)


def expect(response: httpx.Response, ok: tuple[int, ...], what: str, *, resync: tuple[int, ...] = ()) -> None:
    """Raise the typed error unless the status is in ``ok``; ``resync`` statuses are retryable (the flow
    re-asks the server what it has, which fixes them: a duplicate chunk, an offset mismatch)."""
    if response.status_code not in ok:
        raise error_for(response, what, retryable=True if response.status_code in resync else None)


def send(request: httpx.Request) -> Flow[httpx.Response]:
    response: httpx.Response = yield request
    return response


class Retrier:
    """The retry budget of one file's upload, and who hears about each wait.

    ``answered`` turns true with the first answer from the server (any status); until then every
    :class:`CannotConnect` counts against ``connect_retries``, across all steps of the upload.
    """

    def __init__(self, policy: RetryPolicy, name: str = "", notify: RetryCallback | None = None) -> None:
        self.policy = policy
        self.name = name
        self.notify = notify
        self.answered = False
        self.connect_failures = 0
        self._began = time.monotonic()

    def wait(self, attempt: int, limit: int, exc: BaseException) -> Sleep:
        """The Sleep step before retry number ``attempt`` (0-based) of ``limit``, reported first."""
        delay = self.policy.delay(attempt, getattr(exc, "retry_after", None))
        if self.notify is not None:
            self.notify(RetryNotice(self.name, attempt + 1, limit, delay, reason_of(exc), exc))
        return Sleep(delay)

    def unreachable(self, exc: BaseException) -> Sleep | None:
        """For a failure before the server ever answered that is a connection that could not be opened: the
        wait before the next attempt, or :class:`CannotConnect` raised once ``connect_retries`` are spent.
        None for any other failure (the normal budget applies)."""
        if self.answered or not isinstance(exc, CannotConnect):
            return None
        self.connect_failures += 1
        if self.connect_failures > self.policy.connect_retries:
            raise CannotConnect(
                f"{exc} (gave up after {self.connect_failures} attempts in {time.monotonic() - self._began:.1f} s: "
                "is the server running, and is the URL right?)", reason=reason_of(exc)) from exc
        return self.wait(self.connect_failures - 1, self.policy.connect_retries, exc)

    def run(self, make: Callable[[], Flow[T]]) -> Flow[T]:
        """Run a sequential sub-flow again after retryable failures."""
        attempt = 0
        while True:
            try:
                return (yield from self._watched(make()))
            except TransferError as exc:
                if not exc.retryable or isinstance(exc, SessionLost):
                    raise
                pause = self.unreachable(exc)
                if pause is None:
                    if attempt >= self.policy.max_retries:
                        raise
                    pause = self.wait(attempt, self.policy.max_retries, exc)
                    attempt += 1
                yield pause

    def _watched(self, flow: Flow[T]) -> Flow[T]:
        """``flow``'s steps, passed through; any outcome of a request (an answer) sets ``answered``."""
        outcome: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(outcome)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            outcome, error = None, None
            try:
                outcome = yield step
            except GeneratorExit:
                flow.close()
                raise
            except BaseException as exc:  # the driver throws transport failures in: hand them on
                error = exc
            else:
                if outcome is not None:  # a Response or a streamed body's (status, size): the server answered
                    self.answered = True


def retrying(make: Callable[[], Flow[T]], policy: RetryPolicy) -> Flow[T]:
    """Run a sequential sub-flow again after retryable failures (no reporting)."""
    return (yield from Retrier(policy).run(make))
