"""Answers to a running Bulk job's status polls, held until the job ends (or is aborted) or for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.utils import formatdate

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .bulk import Job


class HeldAnswer(Response):
    """The answer ``render`` gives once ``job`` ends (or is aborted), or after ``hold`` seconds with its state
    then: the same answer as an immediate one, only later.

    The wait is a future on the event loop that the job's worker thread completes; it takes none of the
    threads that run requests, so however many polls are held (a client polling a job that never ends,
    several clients polling theirs) every other request is answered as soon as ever.
    """

    def __init__(self, job: Job, hold: float, render: Callable[[], Response]) -> None:
        super().__init__()
        self.job, self.hold, self.answer = job, hold, render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the server has stopped: nobody waits any more
                pass

        if self.job.on_settled(wake):
            try:
                await asyncio.wait_for(woken, self.hold)
            except TimeoutError:
                pass
            finally:
                self.job.forget(wake)
        answer = self.answer()
        kept = {k: v for k, v in self.headers.items() if k not in ("content-length", "content-type", "date")}
        answer.headers.update(kept)
        answer.headers["Date"] = formatdate(usegmt=True)  # the org's clock when the answer is ready
        await answer(scope, receive, send)
