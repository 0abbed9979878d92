"""The lifecycle the HTTP fakes share: an ASGI app under uvicorn in a daemon thread.

A subclass builds its app in `_app()` and calls `super().__init__()` first in its own
`__init__`; this class serves that app on a loopback socket it binds itself, so

- there is no race for the port (the kernel picks a free one for port 0, and the socket
  is handed to uvicorn already bound),
- `down()` stops serving (connections are refused) but keeps the port and everything the
  fake recorded, and `up()` binds the very same port again (SO_REUSEADDR lets it do so
  while old connections linger in TIME_WAIT).

    class FakeThing(LoopbackServer):
        def _app(self) -> Starlette: ...

    with FakeThing() as thing:
        ...  # thing.base_url
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn
from starlette.types import ASGIApp


class LoopbackServer:
    """Serve `_app()` on 127.0.0.1 in a background thread: start/down/up/stop, or `with`."""

    host = "127.0.0.1"
    # Seconds uvicorn gives requests still in flight when told to stop (None: wait for
    # them). A fake that can hang on purpose sets a bound, so down() does not hang too.
    graceful_shutdown: int | None = None

    def __init__(self) -> None:
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def _app(self) -> ASGIApp:
        """The ASGI app to serve; built anew on every (re)start."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self, port: int) -> None:
        """Bind `port` (0: a free one), serve on it and return once uvicorn listens."""
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # protocol says TCP (and on Linux they also inherit the listener's TCP_NODELAY).
        # Without it a response written in two parts (headers, then body) waits ~40 ms
        # for the client's delayed ACK, as no real server behind a proper HTTP stack does.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((self.host, port))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=self.graceful_shutdown,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.005)

    def start(self) -> Self:
        """Serve on a free loopback port; returns self."""
        self._serve(0)
        return self

    def down(self) -> None:
        """Stop serving (connections are refused) but keep the records and the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def up(self) -> Self:
        """Serve again on the same port after down(); returns self."""
        assert self.port is not None, "start() first"
        self._serve(self.port)
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self.down()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
