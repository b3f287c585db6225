"""The AMI's CAN signals: ``ami.dbc`` loaded with cantools, and a fast decoder compiled from it.

``ami.dbc`` beside this module is the single source of truth for the bus: every
identifier, bit position, scale and range o2x uses is read from it here, at first
use. :func:`compiled` turns each message into a small decoding function (one
``int.from_bytes`` and a shift and a mask per signal, written out as Python source
and compiled once), which returns exactly what cantools' ``decode_message`` returns
with ``decode_choices=False``, as a tuple in the DBC's signal order, several times
faster. Nothing here does I/O beyond reading the DBC file once.

>>> messages = compiled()
>>> battery = messages[0x580]
>>> battery.signal_names
('PackCurrent', 'PackVoltage', 'StateOfCharge')
>>> battery.decode(bytes.fromhex("10008c1400550000"))
(1.6, 52.6, 85)
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    import cantools.database

__all__ = ["CompiledMessage", "SignalSpec", "compiled", "database", "encode"]

#: The package resource holding the DBC.
DBC_NAME: Final = "ami.dbc"

#: A decoded value: an int where the signal has no scaling, else a float.
Value = int | float
#: What a compiled decoder returns: one value per signal, in the DBC's order.
Decoder = Callable[[bytes], tuple[Value, ...]]


@attrs.frozen
class SignalSpec:
    """One signal of the DBC, as the decoder and the range checks need it."""

    name: str
    start: int
    length: int
    signed: bool
    scale: int | float
    offset: int | float
    minimum: int | float | None
    maximum: int | float | None
    unit: str | None
    choices: Mapping[int, str]


@attrs.frozen
class CompiledMessage:
    """One message of the DBC with its compiled decoder."""

    frame_id: int
    name: str
    #: The DLC the DBC gives.
    length: int
    signals: tuple[SignalSpec, ...]
    #: ``decode(data)``: the signals' values, in order (``data`` at least ``length`` bytes).
    decode: Decoder = attrs.field(repr=False)

    @property
    def signal_names(self) -> tuple[str, ...]:
        """The signals' names, in the order :attr:`decode` returns their values."""
        return tuple(signal.name for signal in self.signals)

    def index(self, signal: str) -> int:
        """Where ``signal``'s value is in what :attr:`decode` returns."""
        try:
            return self.signal_names.index(signal)
        except ValueError:
            raise KeyError(f"message {self.name} has no signal {signal!r}") from None


@functools.cache
def database() -> cantools.database.can.Database:
    """The DBC as a cantools database (loaded once, strictly checked)."""
    import cantools

    text = importlib.resources.files(__package__).joinpath(DBC_NAME).read_text("utf-8")
    db = cantools.database.load_string(text, database_format="dbc", strict=True)
    assert isinstance(db, cantools.database.can.Database)
    return db


@functools.cache
def compiled() -> Mapping[int, CompiledMessage]:
    """Every message of the DBC by frame ID, each with its compiled decoder."""
    messages: dict[int, CompiledMessage] = {}
    for message in database().messages:
        specs = tuple(_spec(signal) for signal in message.signals)
        messages[message.frame_id] = CompiledMessage(
            frame_id=message.frame_id,
            name=message.name,
            length=message.length,
            signals=specs,
            decode=_compile(message.name, specs),
        )
    return messages


def encode(frame_id: int, values: Mapping[str, Value]) -> bytes:
    """The payload of message ``frame_id`` holding ``values`` (physical values, by name).

    For the simulator and the tests; slow (cantools). Signals left out are 0; values
    outside a signal's range raise ``ValueError``.

    >>> encode(0x714, {"ParkBrake": 1}).hex()
    '0100'
    """
    message = database().get_message_by_frame_id(frame_id)
    full: dict[str, Value] = {signal.name: 0 for signal in message.signals}
    full.update(values)
    try:
        return bytes(message.encode(full, scaling=True, strict=True))
    except Exception as exc:  # cantools raises its own EncodeError and others
        raise ValueError(f"cannot encode {message.name}: {exc}") from exc


def _spec(signal: Any) -> SignalSpec:
    if signal.byte_order != "little_endian" or signal.is_float or signal.is_multiplexer:
        # Every AMI signal is a little-endian integer (docs/can.md); a DBC that needs
        # more gets a decoder that says so rather than one that decodes wrongly.
        raise NotImplementedError(
            f"signal {signal.name}: only little-endian integer signals are compiled"
        )
    choices = {int(key): str(value) for key, value in (signal.choices or {}).items()}
    return SignalSpec(
        name=signal.name,
        start=signal.start,
        length=signal.length,
        signed=signal.is_signed,
        scale=signal.scale,
        offset=signal.offset,
        minimum=signal.minimum,
        maximum=signal.maximum,
        unit=signal.unit,
        choices=choices,
    )


def _compile(name: str, signals: tuple[SignalSpec, ...]) -> Decoder:
    # The hot path of every CAN frame. The payload is read as one little-endian
    # integer (every AMI signal is little-endian, LSB-first bit numbering), so each
    # signal is a shift and a mask; the whole message is one expression, written out
    # as source so that there is no loop or per-signal call at run time.
    lines = [f"def decode_{name}(data, _int=int.from_bytes):", "    v = _int(data, 'little')"]
    parts = []
    for i, signal in enumerate(signals):
        mask = (1 << signal.length) - 1
        raw = f"(v >> {signal.start} & {mask:#x})" if signal.start else f"(v & {mask:#x})"
        if signal.signed:
            sign = 1 << (signal.length - 1)
            lines.append(f"    s{i} = {raw}")
            lines.append(f"    if s{i} & {sign:#x}: s{i} -= {1 << signal.length:#x}")
            raw = f"s{i}"
        parts.append(_scaled(raw, signal.scale, signal.offset))
    lines.append(f"    return ({', '.join(parts)},)")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<o2x.can.dbc {name}>", "exec"), namespace)
    decoder: Decoder = namespace[f"decode_{name}"]
    return decoder


def _scaled(raw: str, scale: int | float, offset: int | float) -> str:
    # What cantools' conversions compute, operation for operation, so that the
    # floats are bit-for-bit the same: the raw integer when there is no scaling,
    # else raw * scale + offset.
    if scale == 1 and offset == 0:
        return raw
    if float(scale).is_integer() and float(offset).is_integer():
        return f"{raw} * {int(scale)} + {int(offset)}"  # cantools keeps these integers
    return f"{raw} * {scale!r} + {offset!r}"
