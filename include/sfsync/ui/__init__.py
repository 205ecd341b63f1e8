"""The "Salesforce sync" page of the Airflow UI: a FastAPI app that the plugin mounts at ``/sfsync``.

Every process that loads plugins imports this package (the scheduler and the DAG processor too), so ``app``
is a thin ASGI callable that imports and builds the real application (``sfsync.ui.routes``) on its first
request: only the api-server ever pays for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyApp:
    """An ASGI app that builds ``sfsync.ui.routes.create_app()`` when it is first called."""

    def __init__(self) -> None:
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from sfsync.ui.routes import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


app = LazyApp()
