"""Pass a caller's disconnect on to vLLM while the node waits for its answer.

A whole (non-streamed) completion is awaited in the route handler, and nothing in Starlette cancels a
handler when its client goes away: vLLM then went on generating to ``max_tokens`` for nobody (STACK.md
saw 64 such requests run for minutes). Here the work races the ASGI ``http.disconnect`` message; on a
disconnect the work is cancelled, which closes the node's connection to vLLM, and vLLM aborts the
request. A streamed response is covered by Starlette itself once it has started
(:class:`inference.stream.EventStreamResponse`); this covers the wait for its first bytes too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

__all__ = ["until_disconnect"]

T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    # Once the body has been read, the server's receive() answers only when the client disconnects.
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Receive, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or None when the client disconnected first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():  # the client left (or this handler itself was cancelled)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # its cleanup (in-flight hold, upstream connection) runs before we return
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    if task.cancelled():
        return None
    return task.result()
