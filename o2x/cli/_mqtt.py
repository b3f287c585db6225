"""``o2x mqtt``: a vehicle published to an MQTT broker (asyncio only, as aiomqtt is)."""

from __future__ import annotations

import os
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Final

import attrs
import click
from rich.console import Console

from ..vehicle import O2XVehicle
from ._common import ExitCode, Failure, Interruption
from ._live import Target, connected

#: Where the password comes from when no --password-file is given.
PASSWORD_ENV: Final = "O2X_MQTT_PASSWORD"
_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}


@attrs.frozen
class Broker:
    """Where and how to connect: ``--broker`` and the options that go with it."""

    url: str
    host: str
    port: int
    tls: bool
    ca_file: Path | None = None
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)


def parse_broker(
    url: str, *, ca_file: Path | None, username: str | None, password_file: Path | None
) -> Broker:
    """The broker the options name, or a usage error saying what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _PORTS:
        raise click.UsageError(
            f"--broker is mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not {url!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise click.UsageError(f"--broker {url!r}: the port is a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise click.UsageError(f"--broker is mqtt://HOST[:PORT] (no path), not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise click.UsageError(
            "--broker takes no credentials: use --username, and --password-file or "
            f"${PASSWORD_ENV} for the password"
        )
    tls = parts.scheme == "mqtts"
    if ca_file is not None and not tls:
        raise click.UsageError("--ca-file is for a TLS broker: use mqtts://")
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is empty or not text"
            raise click.UsageError(
                f"cannot read --password-file {password_file}: {reason}"
            ) from None
    elif PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
    if password is not None and username is None:
        raise click.UsageError("a password needs --username (MQTT sends none without one)")
    return Broker(
        url=url,
        host=parts.hostname,
        port=port if port is not None else _PORTS[parts.scheme],
        tls=tls,
        ca_file=ca_file,
        username=username,
        password=password,
    )


def _tls_context(broker: Broker) -> ssl.SSLContext | None:
    if not broker.tls:
        return None
    try:
        return ssl.create_default_context(
            cafile=None if broker.ca_file is None else os.fspath(broker.ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise Failure(
            f"cannot use --ca-file {broker.ca_file}: {getattr(exc, 'strerror', None) or exc}",
            ExitCode.BROKER_TLS,
        ) from None


async def bridge(
    err: Console,
    target: Target,
    broker: Broker,
    *,
    interval: float,
    topic_prefix: str,
    discovery: bool,
    discovery_prefix: str,
    stopped: Interruption | None = None,
) -> None:
    """Connect to the car, then publish it to the broker until stopped."""
    try:
        import aiomqtt

        from ..mqtt import BrokerRefused, BrokerTLSError, MqttBridge
    except ImportError as exc:
        raise Failure(
            f"o2x mqtt needs aiomqtt ({exc}); install it with pip install 'o2x[mqtt]'",
            ExitCode.MISSING,
        ) from None
    context = _tls_context(broker)
    async with connected(O2XVehicle, target, err, stopped=stopped) as car:
        assert car.vin is not None
        try:
            publisher = MqttBridge(
                car,
                topic_prefix=topic_prefix,
                discovery=discovery,
                discovery_prefix=discovery_prefix,
                interval=interval,
            )
        except ValueError as exc:
            raise Failure(str(exc), ExitCode.USAGE) from None
        async with publisher:
            client = aiomqtt.Client(
                broker.host,
                broker.port,
                username=broker.username,
                password=broker.password,
                identifier=f"o2x-{car.vin}",
                will=publisher.will,
                tls_context=context,
            )
            if stopped is not None:
                stopped.message = "Stopped; offline published, the vehicle was disconnected."
            err.print(
                f"Connected to {car.vin} at {car.address}; publishing it to {broker.url} "
                f"under {publisher.topics.base}/ (Ctrl-C to stop)."
            )
            lost_at: list[float] = []

            def on_connect() -> None:
                since = f" after {time.monotonic() - lost_at[0]:.1f} s" if lost_at else ""
                err.print(f"Broker {broker.url} connected{since}; publishing the latest state.")
                lost_at.clear()

            def on_lost(error: Exception, delay: float) -> None:
                if not lost_at:
                    lost_at.append(time.monotonic())
                err.print(
                    f"[yellow]Cannot reach the broker {broker.url} ({error}); trying again "
                    f"in {delay:g} s. The car stays connected.[/]"
                )

            try:
                await publisher.serve(
                    client,
                    on_connect=on_connect,
                    on_lost=on_lost,
                )
            except BrokerRefused as exc:
                raise Failure(str(exc), ExitCode.BROKER_AUTH) from None
            except BrokerTLSError as exc:
                raise Failure(str(exc), ExitCode.BROKER_TLS) from None
