"""The ASGI pieces the sandbox's middlewares share: the type aliases, and answering a request with a body the
middleware has read (and may have changed) instead of the one the app streamed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def buffered_response(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[Any], bytes]:
    """The app's answer held back whole: its status (500 if it never started one), headers and body."""
    start: Message = {}
    chunks: list[bytes] = []

    async def buffer(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, buffer)
    return int(start.get("status", 500)), list(start.get("headers", [])), b"".join(chunks)


async def send_response(send: Send, status: int, headers: list[Any], body: bytes) -> None:
    """Sends ``body`` with the app's status and headers, its Content-Length recomputed (the body may have changed)."""
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})
