"""The adaptive batcher's rules (serving.batching), on a real event loop and a real thread pool.

The scoring function blocks on an event the test controls, so which requests end up in which batch
is decided by the batcher's rules alone, never by timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from serving.batching import AdaptiveBatcher

pytestmark = pytest.mark.unit


class Scorer:
    """Records each batch it is given; the first batch waits until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, payloads: list[str]) -> list[str | BaseException]:
        self.batches.append(list(payloads))
        self.started.set()
        self.release.wait(30)
        return [p.upper() if p != "bad" else ValueError("bad row") for p in payloads]


T = TypeVar("T")


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def gone_if_in(left: set[str], payload: str) -> Callable[[], bool]:
    return lambda: payload in left


def test_a_lone_request_is_scored_at_once_even_with_a_long_window() -> None:
    scorer = Scorer()
    scorer.release.set()

    async def main() -> str:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(scorer, pool, 1, max_rows=64, max_wait=3600.0, expected=lambda: 0)
            return await batcher.submit("a", 1)

    assert run(main) == "A"  # with a 1 h window, waiting would never have returned
    assert scorer.batches == [["a"]]


def test_requests_queued_while_the_thread_works_are_scored_as_one_batch() -> None:
    scorer = Scorer()

    async def main() -> list[str]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(scorer, pool, 1, max_rows=64, max_wait=3600.0)
            first = asyncio.ensure_future(batcher.submit("a", 1))
            await asyncio.get_running_loop().run_in_executor(None, scorer.started.wait, 30)
            rest = [asyncio.ensure_future(batcher.submit(p, 1)) for p in "bcd"]
            await asyncio.sleep(0)
            scorer.release.set()
            return [await first, *[await r for r in rest]]

    assert run(main) == ["A", "B", "C", "D"]
    assert scorer.batches == [["a"], ["b", "c", "d"]]


def test_a_queued_request_waits_for_the_requests_still_on_their_way() -> None:
    """While requests are being read and validated, the first one waits for them (up to the
    window, here an hour): the three become one batch the moment the last one arrives."""
    scorer = Scorer()
    scorer.release.set()
    on_their_way = [3]

    async def submit(batcher: AdaptiveBatcher[str, str], payload: str) -> str:
        on_their_way[0] -= 1  # what serving.http.reached_model does as the request reaches predict
        return await batcher.submit(payload, 1)

    async def main() -> list[str]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(
                scorer, pool, 1, max_rows=64, max_wait=3600.0, expected=lambda: on_their_way[0]
            )
            first = asyncio.ensure_future(submit(batcher, "a"))
            await asyncio.sleep(0)
            assert scorer.batches == [] and not first.done()
            return list(await asyncio.gather(first, submit(batcher, "b"), submit(batcher, "c")))

    assert run(main) == ["A", "B", "C"]
    assert scorer.batches == [["a", "b", "c"]]


def test_a_batch_never_holds_more_than_max_rows_and_failures_stay_per_request() -> None:
    scorer = Scorer()

    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(scorer, pool, 1, max_rows=4, max_wait=0.0)
            first = asyncio.ensure_future(batcher.submit("a", 1))
            await asyncio.get_running_loop().run_in_executor(None, scorer.started.wait, 30)
            rest = [asyncio.ensure_future(batcher.submit(p, 3)) for p in ("b", "bad", "c")]
            await asyncio.sleep(0)
            scorer.release.set()
            return list(await asyncio.gather(first, *rest, return_exceptions=True))

    answers = run(main)
    assert answers[:2] == ["A", "B"] and isinstance(answers[2], ValueError) and answers[3] == "C"
    assert scorer.batches == [["a"], ["b"], ["bad"], ["c"]]  # 3 + 3 rows > 4: never merged


def test_a_request_whose_client_left_is_dropped_before_it_is_scored() -> None:
    scorer = Scorer()
    left = {"b"}

    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(
                scorer, pool, 1, max_rows=64, max_wait=0.0, gone_error=lambda: LookupError("gone")
            )
            first = asyncio.ensure_future(batcher.submit("a", 1))
            await asyncio.get_running_loop().run_in_executor(None, scorer.started.wait, 30)
            rest = [asyncio.ensure_future(batcher.submit(p, 1, gone=gone_if_in(left, p))) for p in "bc"]
            await asyncio.sleep(0)
            scorer.release.set()
            return list(await asyncio.gather(first, *rest, return_exceptions=True))

    answers = run(main)
    assert answers[0] == "A" and isinstance(answers[1], LookupError) and answers[2] == "C"
    assert scorer.batches == [["a"], ["c"]]


def test_nonsense_limits_are_refused() -> None:
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="max_rows"):
        AdaptiveBatcher(Scorer(), pool, 1, max_rows=0, max_wait=0.0)
