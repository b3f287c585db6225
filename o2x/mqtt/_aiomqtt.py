"""A workaround for aiomqtt's socket-writer registration (aiomqtt 2.x, paho 2.x).

aiomqtt asks asyncio to watch paho's socket for writing through
``loop.call_soon_threadsafe(loop.add_writer, ...)``, deferred even when paho asks from
the loop's own thread, while it stops watching (``remove_writer``) at once. paho asks
for both within one call when it writes everything immediately: on a CONNACK it sends
again the QoS 1 messages that a lost connection left unacknowledged, and writes them
there and then. The deferred addition then runs after the removal and leaves a writer
paho no longer knows of. The loop spins on the socket (always writable), and once paho
closes it asyncio either reports ``add_writer`` on a closed socket (``EBADF``, an error
of the loop) or keeps the descriptor's registration, so that a later socket that gets
the same number is never watched: a bridge that cannot reconnect, silently.

:func:`register_writes_in_order` replaces the client's callback with one that adds the
writer only if paho still wants it when the addition runs. It uses two private
attributes of ``aiomqtt.Client`` (``_client``, paho's client, and ``_disconnected``);
where they are missing (another aiomqtt), it changes nothing and says so in the log.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from typing import Any

import aiomqtt

_log = logging.getLogger(__name__)


def register_writes_in_order(client: aiomqtt.Client) -> bool:
    """Patch ``client`` (see the module docstring); ``False`` if it could not be."""
    paho_client = getattr(client, "_client", None)
    disconnected = getattr(client, "_disconnected", None)
    if not (
        hasattr(paho_client, "on_socket_register_write")
        and isinstance(disconnected, asyncio.Future)
    ):
        _log.info(
            "aiomqtt %s: its socket callbacks are not where o2x expects them; not patched",
            importlib.metadata.version("aiomqtt"),
        )
        return False
    loop = asyncio.get_running_loop()

    def on_socket_register_write(paho: Any, userdata: object, sock: Any) -> None:
        def write() -> None:
            try:
                paho.loop_write()
            except Exception as exc:  # as aiomqtt's own: the connection broke
                # Read again: aiomqtt makes a new future for each connection.
                future = getattr(client, "_disconnected", None)
                if isinstance(future, asyncio.Future) and not future.done():
                    future.set_exception(exc)

        def add() -> None:
            # Still wanted? paho may have written everything, and unregistered, since.
            if paho.socket() is sock and paho.want_write():
                loop.add_writer(sock.fileno(), write)

        # paho also calls this from aiomqtt's connecting thread: thread-safe, as aiomqtt.
        loop.call_soon_threadsafe(add)

    paho_client.on_socket_register_write = on_socket_register_write  # type: ignore[union-attr]
    return True
