"""Sans-I/O emulators of the OBD adapters the simulator puts on its virtual radio.

An :class:`Elm327Emulator` is an ELM327 (or one of its clones, with
:class:`Elm327Quirks`); a :class:`SlcanEmulator` is a WiCAN in its default
``slcan`` protocol. Both are byte machines with no I/O, no clock and no
Bluetooth: the bytes the host wrote go in with :meth:`write`, the car's CAN
frames with :meth:`bus_frame`, and :meth:`read` hands back what the adapter has
sent by then. Time is the ``now`` argument of every call, in seconds, and must
never go backwards; the radio glue chunks :meth:`read`'s bytes into
notifications. A monitoring session, transcribed::

    >>> elm = Elm327Emulator(quirks=Elm327Quirks(throughput=math.inf))
    >>> elm.write(b"ATE0\\rATH1\\rATSP6\\rATMA\\r", now=0.0)
    >>> elm.bus_frame(0x580, bytes.fromhex("10008C1400550000"), now=0.1)
    >>> elm.write(b"x", now=0.2)
    >>> elm.read(now=0.3)
    b'ATE0\\rOK\\r\\r>OK\\r\\r>OK\\r\\r>580 10 00 8C 14 00 55 00 00\\rSTOPPED\\r\\r>'

The car's frames come from the simulator's model, e.g. every 100 ms
``for can_id, data in ami_frames(model): elm.bus_frame(can_id, data, now)``
(:func:`o2x.sim.can.ami_frames`, :func:`~o2x.sim.can.vin_frames`).

Sources: [E] the ELM327 datasheet (ELM327DSJ), [K] the Linux ``can327`` driver
and its documentation (``Documentation/networking/device_drivers/can/can327.rst``),
[W] the WiCAN firmware (meatpiHQ/wican-fw ``main/slcan.c``, ``main/elm327.c``,
``main/ble.c``, ``main/main.c``; ``docs/can.md`` lists them). Where a behaviour
below has no source it says so.

**Time and throughput.** Everything an adapter sends goes through one FIFO link
that carries ``throughput`` bytes a second: a byte queued at ``t`` leaves no
earlier than ``t`` and no earlier than ``1 / throughput`` after the byte before
it, and :meth:`read` returns the bytes that have left by ``now``. The default,
:data:`BLE_THROUGHPUT`, is one 20-byte notification (ATT MTU 23, which [W] notes
Car Scanner on Android never raises) per 7.5 ms connection event, the shortest interval
Bluetooth LE allows: about 2,667 bytes/s. The other limit on the path, an
ELM327's UART at its factory 38,400 baud ([K]: 8N1, so 3,840 bytes/s), is
faster, so the radio is the bottleneck. It is a best case: at 30 ms intervals a
phone gets a quarter of it, which ``throughput=`` models. ``math.inf`` sends
everything at once.

**ELM327 framing** (the exact bytes, with linefeeds off; with ``ATL1`` every CR
is followed by an LF):

- Echo (on after every reset, ``ATE0`` turns it off): each received byte is sent
  back as received, spaces and CR included, before any answer.
- An answer: each line, CR, then an empty line (CR) and the prompt ``>``:
  ``OK\\r\\r>``, ``?\\r\\r>``, ``ELM327 v1.5\\r\\r>`` for ``ATI``. [K]'s
  terminal transcripts show the empty line before ``>``; [W] sends the same
  bytes, and so does a BLE clone in ELMduino's debug log.
- ``ATZ`` / ``ATWS``: two empty lines, then the version: ``\\r\\rELM327 v1.5\\r\\r>``
  ([K] ``AT WS`` transcript). A reset returns every setting to its default and
  the protocol to the saved one (``ATSP`` saves, ``ATTP`` only tries: [E]). It
  takes ``reset_time`` (0 by default), and what arrives meanwhile is lost: the
  chip restarts ([W] drops the rest of a write after ``ATZ``, for Car Scanner's
  ``ATZ\\rATE0\\r``, and suspects a real chip does too; the time is not in the
  sources).
- ``ATMA``: no ``OK``; one line per bus frame that passes the filter, until any
  byte arrives. That byte is discarded ([E]); the lines already made go out,
  then ``STOPPED\\r\\r>``. Input after it waits for the prompt.
- ``BUFFER FULL``: the adapter's transmit buffer holds ``buffer_size`` bytes not
  yet sent ([E]: 512). A monitor line that does not fit is cut where the buffer
  filled, then `` BUFFER FULL\\r\\r>`` follows on the same line ([K]:
  ``... DEADBEEF123 BUFFER FULL``), or at the start of a line if nothing of it
  fitted, and monitoring ends. The message itself always fits (a model choice).
- An empty command line repeats the last command ([E]); after a reset there is
  none, and an empty line gets the prompt alone (no source).
- Commands: case and spaces and control characters are ignored ([E]); a line
  keeps at most 128 significant characters (the size of [W]'s command buffer;
  the chip's own is not in the sources), a longer one answers ``?``. Hex lines
  (OBD requests) answer ``NO DATA`` (the AMI answers no OBD requests: WiCAN
  issue #316), ``UNABLE TO CONNECT`` on an adapter without CAN.

**Hostile adapters** (quirks for the tests of hostile peers; made up, not from the
sources): ``never_prompts``, no ``>`` ever; ``endless_garbage``, random bytes at the
link's full throughput and never an answer; ``endless_line``, after ``ATMA`` a line
that never ends (hex digits and spaces, no CR) and that nothing stops; ``flood``, that
many made-up frames a second shown besides the car's, whatever the filter. Endless
output is made as the link carries it (at most 64 KiB a call: after a longer gap
between calls the older bytes are lost) and a flood shows at most 10,000 frames a
call, so the emulator's memory stays bounded whatever it is made to send.

Supported AT commands (anything else answers ``?``): ``Z``, ``WS``, ``D``, ``I``,
``@1``, ``E0/1``, ``L0/1``, ``S0/1``, ``H0/1``, ``D0/1``, ``CAF0/1``,
``SP h``/``SP Ah``/``TP h``/``TP Ah``, ``DP``, ``DPN``, ``AR``, ``CRA [hhh]``,
``CF hhh``, ``CM hhh`` (and their 8-digit, 29-bit forms), ``MA``, and, answered
``OK`` without effect, ``M0/1 R0/1 V0/1 AL NL BI PC AT0/1/2 CFC0/1 CSM0/1 ST hh
SH xyz PB xxyy PP hh ON/OFF CP hh CEA [hh]`` ([K]'s init script uses several).

**Monitor lines** ([E], [K]): with ``ATH1`` the 3-digit 11-bit ID (or 4 bytes of
a 29-bit one; an ID above 0x7FF is taken as 29-bit), with ``ATD1`` the DLC as
one digit, then the data bytes; all separated by spaces with ``ATS1``, run
together with ``ATS0``: ``580 10 00 8C 14 00 55 00 00`` or
``58010008C1400550000``. With ``ATCAF1`` (the default) a frame whose first byte
is no valid ISO-TP PCI byte gets `` <DATA ERROR`` beside it ([E]; a forum
transcript shows ``231 00 <DATA ERROR``), and with ``ATH0`` a single frame shows
only its payload ([E]: H1 overrides the formatting so the bytes appear "as
received"); first, consecutive and flow-control frames are shown as received
(how a real chip prints them while monitoring is not in the sources).
Filters: a frame is shown when ``id & mask == filter & mask`` ([E]: mask bit 1
must match); ``CRA 58X`` is filter 580, mask 700 (X: don't care), ``AR`` and a
reset clear them, so everything passes. Only protocols 0 (auto: the bus is taken
to be found at once, no ``SEARCHING...``), 6 and 7 hear the AMI's 500 kbit/s
bus; on any other an ``ATMA`` shows nothing. DP's texts are [W]'s.

**WiCAN slcan** ([W] ``slcan.c``): every command ends in CR; ``O`` (``L``
listen-only, ``Y`` loopback) opens the channel, ``C`` closes it, ``S0``..``S8``
set the bitrate (S6 = 500 kbit/s; refused while open), ``Z0``/``Z1`` timestamps,
``V``/``v`` answer ``V2011\\r``, ``N`` ``N43010123\\r``, ``F`` ``F00\\r``,
``M``/``m`` take an acceptance code and mask (stored, not applied), ``s``, ``a``,
``A``, ``D`` are accepted and ignored, ``t/T/r/R`` frames are collected in
:attr:`SlcanEmulator.transmitted`. Every other accepted command is acked with a
CR. While open at 500 kbit/s, every bus frame becomes ``t`` + 3 hex digits of
ID + DLC + data (+ 4 hex digits of ``now`` in ms mod 60,000 with ``Z1``) + CR,
``T`` and 8 digits for a 29-bit ID: ``t580810008C1400550000\\r`` (22 bytes). [W] queues
each line for Bluetooth in a queue of 100 (``main.c``) without waiting, so a
frame that finds ``queue_size`` lines still unsent is lost.

*Errors differ from Lawicel's protocol*: [W] never sends BEL. An unknown letter
is skipped as if absent (so ``\\n`` before a command is harmless, and ``XO\\r``
opens the channel), an empty line gets nothing, and a known command that cannot
be carried out (``S9``, ``O`` while open, ``t`` while closed) is still acked
with CR. ``errors="lawicel"`` gives the classic behaviour instead: BEL
(``\\x07``) for an unknown, malformed or refused command, and ``z\\r`` / ``Z\\r``
for a transmitted frame.
"""

from __future__ import annotations

import enum
import functools
import math
import random
import re
from collections import deque
from collections.abc import Callable
from typing import Final, Literal

import attrs

__all__ = [
    "BLE_THROUGHPUT",
    "Elm327Emulator",
    "Elm327Quirks",
    "Elm327Stats",
    "SlcanEmulator",
    "SlcanStats",
]

#: Bytes a second over Bluetooth LE at best: one 20-byte notification per 7.5 ms event.
BLE_THROUGHPUT: Final = 20 / 0.0075

_CR: Final = 0x0D
_BEL: Final = b"\x07"
_MAX_CAN_ID: Final = 0x1FFFFFFF
_MAX_STD_ID: Final = 0x7FF
_MAX_LINE: Final = 128  # significant characters of one ELM327 command line ([W]'s buffer)
_MAX_PENDING: Final = 4096  # bytes written while the adapter is busy; more are dropped
_MAX_SLCAN_LINE: Final = 32  # [W]: SLCAN_MTU is 30; a longer line is garbage
_EPSILON: Final = 1e-9  # float slack when counting the bytes a link has sent
_MAX_ENDLESS: Final = 65_536  # bytes of endless output made in one call, at most
_MAX_FLOOD: Final = 10_000  # flood frames shown in one call, at most
_LINE_BYTES: Final = b"0123456789ABCDEF    "  # the endless line: hex digits and spaces


def _check_time(now: float, last: float) -> None:
    if not now >= last:  # also refuses NaN
        raise ValueError(f"time went backwards (or is not a number): {now} after {last}")


def _check_frame(can_id: int, data: bytes) -> None:
    if not 0 <= can_id <= _MAX_CAN_ID:
        raise ValueError(f"a CAN ID is 0 to 0x1FFFFFFF, not {can_id:#x}")
    if len(data) > 8:
        raise ValueError(f"a classic CAN frame carries at most 8 bytes, not {len(data)}")


class _Link:
    """The adapter's way out: a FIFO of bytes leaving at ``rate`` bytes a second.

    Byte *k* of a segment queued to start at *s* has left at ``s + (k + 1) / rate``.
    Segments are queued in time order, so whatever is still unsent at the time of
    the last :meth:`put` is one unbroken run ending at :attr:`_end`.
    """

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._segments: deque[tuple[float, bytes]] = deque()
        self._read = 0  # bytes of the first segment already handed out
        self._end = -math.inf  # when the last queued byte has left
        self.queued = 0  # bytes ever queued

    @property
    def end(self) -> float:
        """When the last byte queued will have left (``-math.inf`` before the first)."""
        return self._end

    def put(self, data: bytes, now: float) -> float:
        """Queue ``data`` at ``now``; return when its last byte will have left."""
        if not data:
            return max(now, self._end)
        if math.isinf(self._rate):
            start = self._end = now
        else:
            start = max(now, self._end)
            self._end = start + len(data) / self._rate
        self._segments.append((start, data))
        self.queued += len(data)
        return self._end

    def backlog(self, now: float) -> int:
        """Bytes queued by ``now`` that have not left by ``now``."""
        if math.isinf(self._rate) or self._end <= now:
            return 0
        return math.ceil((self._end - now) * self._rate - _EPSILON)

    def take(self, now: float) -> bytes:
        """The bytes that have left by ``now`` and were not taken before."""
        out = bytearray()
        while self._segments:
            start, data = self._segments[0]
            if start > now:
                break
            if math.isinf(self._rate):
                sent = len(data)
            else:
                sent = min(len(data), math.floor((now - start) * self._rate + _EPSILON))
            if sent > self._read:
                out += data[self._read : sent]
            if sent < len(data):
                self._read = max(self._read, sent)
                break
            self._segments.popleft()
            self._read = 0
        return bytes(out)


# --- ELM327 -------------------------------------------------------------------------------


@attrs.frozen
class Elm327Quirks:
    """How an emulated ELM327 departs from the datasheet: clone quirks and faults.

    All off by default, which gives a faithful chip behind a best-case BLE link.
    """

    #: ``ATS0`` is answered ``OK`` but spaces stay on.
    ignores_spaces_off: bool = False
    #: ``ATE0`` is answered ``OK`` but echo stays on.
    keeps_echo: bool = False
    #: Probability per output line (not echo) of 1-3 garbage bytes inserted in it:
    #: NUL ([K]: a PIC bug inserts them) or bytes with the high bit set ([K]: bad
    #: hardware sets bits 0xC0 at random). Drawn from the emulator's seeded generator.
    garbage: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    #: Whether that garbage may hold 0xBE and 0xFE, the prompt ``>`` with bits 0xC0 set,
    #: which a host that masks them as [K] does takes for a prompt; ``False`` draws again.
    garbage_prompts: bool = True
    #: Seconds between a command's last byte (its CR, or the byte that stops
    #: monitoring) and its effect and answer; input waits meanwhile (slow adapters).
    answer_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    #: The transmit buffer: bytes queued but not yet sent ([E]: "512 byte internal
    #: RS232 transmit buffer"). A monitor line that does not fit ends in BUFFER FULL.
    buffer_size: int = attrs.field(default=512, validator=attrs.validators.ge(1))
    #: Bytes a second the adapter gets out (see the module's docstring).
    throughput: float = attrs.field(default=BLE_THROUGHPUT, validator=attrs.validators.gt(0.0))
    #: The adapter cannot do CAN: ``?`` to ``ATSP6`` (and to any CAN protocol), and
    #: ``ATMA`` hears nothing.
    no_can: bool = False
    #: Seconds ``ATZ`` / ``ATWS`` take (after ``answer_delay``) before the banner;
    #: input that arrives meanwhile is lost.
    reset_time: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    #: Hostile: the prompt ``>`` is never sent.
    never_prompts: bool = False
    #: Linefeeds after a reset ([E]: set by pin 7; a BLE clone's ``ATZ`` answer in
    #: ELMduino's debug log has none).
    linefeeds_by_default: bool = False
    #: Hostile: no echo and no answer ever, only random bytes (any of the 256) at the
    #: link's full throughput from the first call on, forever; input and the bus are
    #: ignored. Needs a finite ``throughput``.
    endless_garbage: bool = False
    #: Hostile: ``ATMA`` starts a line that never ends: hex digits and spaces at the
    #: link's full throughput, never a CR or a prompt, for as long as the adapter is
    #: powered. Nothing stops it: input is ignored from then on, and so is the bus.
    #: Needs a finite ``throughput``.
    endless_line: bool = False
    #: Hostile: frames a second that the monitor shows besides the car's, whatever the
    #: filter: random 11-bit IDs that are none of ``ami.dbc``'s, 0 to 8 random bytes
    #: (a bus far busier than the AMI's, or a clone that makes frames up). Past what
    #: the link carries (about 127 lines a second at the default throughput), its
    #: buffer overflows: ``BUFFER FULL``, as for the car's own frames.
    flood: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))

    def __attrs_post_init__(self) -> None:
        if (self.endless_garbage or self.endless_line) and math.isinf(self.throughput):
            raise ValueError(
                "endless_garbage and endless_line send at the link's throughput: it must be finite"
            )


@attrs.frozen
class Elm327Stats:
    """What an :class:`Elm327Emulator` has done so far."""

    #: Command lines carried out (a repeated empty line counts).
    commands: int
    #: Frames given to :meth:`Elm327Emulator.bus_frame`.
    frames_seen: int
    #: Frames that became a complete monitor line.
    frames_shown: int
    #: Frames heard while monitoring that the filter kept out.
    frames_filtered: int
    #: Frames lost to BUFFER FULL (the one cut short).
    frames_lost: int
    #: Times monitoring ended in BUFFER FULL.
    buffer_full: int
    #: Bytes written while busy beyond the input limit, dropped (and all of them, once
    #: an ``endless_garbage`` or ``endless_line`` adapter ignores its input).
    input_dropped: int
    #: Bytes queued for the host so far, read or not.
    bytes_queued: int
    #: Frames of the ``flood`` quirk that became a complete monitor line.
    frames_flooded: int = 0
    #: Lines the ``garbage`` quirk put garbage bytes in.
    lines_garbled: int = 0


@attrs.define
class _Settings:
    echo: bool = True
    linefeeds: bool = False
    spaces: bool = True
    headers: bool = False
    dlc: bool = False
    auto_format: bool = True
    filter11: int = 0
    mask11: int = 0
    filter29: int = 0
    mask29: int = 0


class _Special(enum.Enum):
    RESET = enum.auto()
    MONITOR = enum.auto()


class _Job(enum.Enum):
    """What a busy adapter does when it is done."""

    COMMAND = enum.auto()  # carry out a command line
    STOP = enum.auto()  # print STOPPED after monitoring
    RESTART = enum.auto()  # come back from ATZ / ATWS


#: An answer: its lines, or something that is not a plain answer.
_Reply = tuple[str, ...] | _Special

_OK: Final = ("OK",)
_UNKNOWN: Final = ("?",)
#: The protocols whose bus an ATMA hears (the AMI's is CAN 11-bit, 500 kbit/s).
_HEARD_PROTOCOLS: Final = frozenset("067")
_CAN_PROTOCOLS: Final = frozenset("6789ABC")
#: [W] ``elm327_describe_protocol``'s texts, B and C named after [E]'s user protocols.
_PROTOCOL_NAMES: Final = {
    "0": "AUTO",
    "1": "SAE J1850 PWM",
    "2": "SAE J1850 VPW",
    "3": "ISO 9141-2",
    "4": "ISO 14230-4 KWP/5",
    "5": "ISO 14230-4 KWP",
    "6": "ISO 15765-4 CAN (11 bit ID, 500 kbaud)",
    "7": "ISO 15765-4 CAN (29 bit ID, 500 kbaud)",
    "8": "ISO 15765-4 CAN (11 bit ID, 250 kbaud)",
    "9": "ISO 15765-4 CAN (29 bit ID, 250 kbaud)",
    "A": "SAE J1939 CAN (29 bit ID, 250 kbaud)",
    "B": "USER1 CAN (11 bit ID, 125 kbaud)",
    "C": "USER2 CAN (11 bit ID, 50 kbaud)",
}
_HEX_LINE: Final = re.compile(r"[0-9A-F]{2,}")


class Elm327Emulator:
    """An ELM327 on the car's OBD socket, as bytes: see the module's docstring.

    ``version`` is what ``ATZ``, ``ATWS`` and ``ATI`` print; ``seed`` seeds the
    garbage quirk. :attr:`monitoring` and :attr:`stats` tell the state as of the
    last call.
    """

    def __init__(
        self, *, quirks: Elm327Quirks = Elm327Quirks(), version: str = "ELM327 v1.5", seed: int = 0
    ) -> None:
        self.quirks: Final = quirks
        self.version: Final = version
        self._rng = random.Random(seed)
        self._link = _Link(quirks.throughput)
        self._settings = self._defaults()
        self._protocol = "0"
        self._auto = False
        self._saved_protocol = ("0", False)
        self._monitoring = False
        # Input: chunks (arrival time, bytes) not yet processed, and where the first one is.
        self._pending: deque[tuple[float, bytes]] = deque()
        self._pending_at = 0
        self._pending_size = 0
        self._line = bytearray()
        self._line_too_long = False
        self._last_command: bytes | None = None
        # What the adapter is busy with: when it is done, and what it then does.
        self._busy: tuple[float, _Job, bytes] | None = None
        self._free_at = -math.inf  # input is processed no earlier than this
        self._now = -math.inf
        self._commands = 0
        self._frames_seen = 0
        self._frames_shown = 0
        self._frames_filtered = 0
        self._frames_lost = 0
        self._buffer_full = 0
        self._input_dropped = 0
        # The hostile quirks: their own generator, so that they change no other draw.
        self._hostile_rng = random.Random(f"hostile:{seed}")
        self._frames_flooded = 0
        self._lines_garbled = 0
        # While monitoring with a flood: when it started and how many frames were due.
        self._flood_start = math.inf
        self._flood_due = 0
        # Endless output (garbage, or the line that never ends): from when it started,
        # and how many bytes of it the link has been given. Once it runs, the adapter
        # ignores its input and the bus.
        self._endless_since: float | None = None
        self._endless_sent = 0
        self._garbage_pool = bytearray()

    # --- the interface ----------------------------------------------------------------

    def write(self, data: bytes, now: float) -> None:
        """Bytes the host wrote at ``now``, split anywhere; commands end with CR."""
        self._advance(now)
        if self._endless_since is not None:
            self._input_dropped += len(data)
            return
        room = _MAX_PENDING - self._pending_size
        if len(data) > room:
            self._input_dropped += len(data) - room
            data = data[:room]
        if data:
            self._pending.append((now, bytes(data)))
            self._pending_size += len(data)
        self._advance(now)

    def bus_frame(self, can_id: int, data: bytes, now: float) -> None:
        """A frame seen on the car's bus at ``now`` (an ID above 0x7FF is 29-bit)."""
        _check_frame(can_id, data)
        self._advance(now)
        self._frames_seen += 1
        if self._monitoring and self._hears() and self._endless_since is None:
            self._show(can_id, bytes(data), now)

    def read(self, now: float) -> bytes:
        """The bytes the adapter has sent by ``now`` and that were not read before."""
        self._advance(now)
        return self._link.take(now)

    @property
    def monitoring(self) -> bool:
        """In ``ATMA``: bus frames become lines."""
        return self._monitoring

    @property
    def stats(self) -> Elm327Stats:
        """Counters since the emulator was made."""
        return Elm327Stats(
            commands=self._commands,
            frames_seen=self._frames_seen,
            frames_shown=self._frames_shown,
            frames_filtered=self._frames_filtered,
            frames_lost=self._frames_lost,
            buffer_full=self._buffer_full,
            input_dropped=self._input_dropped,
            bytes_queued=self._link.queued,
            frames_flooded=self._frames_flooded,
            lines_garbled=self._lines_garbled,
        )

    def __repr__(self) -> str:
        mode = "monitoring" if self._monitoring else "command mode"
        return f"<Elm327Emulator {self.version!r}, {mode}>"

    # --- time: input is processed in order, each byte no earlier than it arrived --------

    def _advance(self, now: float) -> None:
        _check_time(now, self._now)
        self._now = now
        if self.quirks.endless_garbage and self._endless_since is None:
            self._endless_since = now  # from the first call on
        if self._endless_since is not None:
            self._pending.clear()
            self._pending_at = self._pending_size = 0
            self._busy = None
            self._endless(now)
            return
        while True:
            if self._busy is not None:
                done_at, job, line = self._busy
                if done_at > now:
                    return
                self._busy = None
                self._free_at = done_at
                if job is _Job.COMMAND:
                    self._execute(line, done_at)
                elif job is _Job.STOP:
                    self._reply(("STOPPED",), done_at)
                else:
                    self._restarted(done_at)
                if self._endless_running():  # the line that never ends began
                    self._advance(now)
                    return
                continue
            if not self._pending:
                self._flood_until(now)
                return
            arrival, chunk = self._pending[0]
            at = max(arrival, self._free_at)
            self._flood_until(at)
            echo = bytearray()
            i = self._pending_at
            while i < len(chunk) and self._busy is None:
                self._receive(chunk[i], at, echo)
                i += 1
            if echo:
                self._link.put(bytes(echo), at)
            self._pending_size -= i - self._pending_at
            if i == len(chunk):
                self._pending.popleft()
                self._pending_at = 0
            else:
                self._pending_at = i

    def _receive(self, byte: int, at: float, echo: bytearray) -> None:
        if self._monitoring:
            # Any byte stops monitoring and is discarded ([E]).
            self._monitoring = False
            self._busy = (at + self.quirks.answer_delay, _Job.STOP, b"")
            return
        if self._settings.echo:
            echo.append(byte)
        if byte == _CR:
            line = b"?" if self._line_too_long else bytes(self._line)
            self._line.clear()
            self._line_too_long = False
            self._busy = (at + self.quirks.answer_delay, _Job.COMMAND, line)
        elif byte <= 0x20 or byte == 0x7F:
            pass  # spaces and control characters are ignored ([E])
        elif len(self._line) < _MAX_LINE:
            self._line.append(byte)
        else:
            self._line_too_long = True

    # --- commands ---------------------------------------------------------------------

    def _execute(self, line: bytes, at: float) -> None:
        if not line:
            if self._last_command is None:
                if not self.quirks.never_prompts:
                    self._link.put(b">", at)
                return
            line = self._last_command
        self._last_command = line
        self._commands += 1
        reply = self._dispatch(line.decode("latin-1").upper())
        if reply is _Special.RESET:
            self._reset(at)
        elif reply is _Special.MONITOR:
            self._monitoring = True
            if self.quirks.endless_line:
                self._endless_since = max(at, self._link.end)
            elif self.quirks.flood > 0:
                self._flood_start, self._flood_due = at, 0
        else:
            self._reply(reply, at)

    def _dispatch(self, command: str) -> _Reply:
        if not command.startswith("AT"):
            if _HEX_LINE.fullmatch(command):
                return ("UNABLE TO CONNECT",) if self.quirks.no_can else ("NO DATA",)
            return _UNKNOWN
        rest = command[2:]
        for pattern, handler in _AT_COMMANDS:
            match = pattern.fullmatch(rest)
            if match is not None:
                return handler(self, match)
        return _UNKNOWN

    def _defaults(self) -> _Settings:
        return _Settings(linefeeds=self.quirks.linefeeds_by_default)

    def _reset(self, at: float) -> None:
        self._line.clear()
        self._line_too_long = False
        self._last_command = None
        self._settings = self._defaults()
        self._protocol, self._auto = self._saved_protocol
        self._monitoring = False
        self._busy = (at + self.quirks.reset_time, _Job.RESTART, b"")

    def _restarted(self, at: float) -> None:
        # The chip is back: what arrived while it restarted is lost.
        while self._pending and self._pending[0][0] < at:
            _, chunk = self._pending.popleft()
            self._pending_size -= len(chunk) - self._pending_at
            self._pending_at = 0
        self._link.put(self._eol() * 2, at)
        self._reply((self.version,), at)

    def _set_protocol(self, match: re.Match[str], *, save: bool) -> _Reply:
        auto, protocol = bool(match[1]), match[2]
        if self.quirks.no_can and protocol in _CAN_PROTOCOLS:
            return _UNKNOWN
        self._protocol, self._auto = protocol, auto
        if save:
            self._saved_protocol = (protocol, auto)
        return _OK

    def _erase_protocol(self) -> _Reply:
        self._saved_protocol = ("0", False)
        return _OK

    def _describe_protocol(self, *, number: bool) -> _Reply:
        auto = self._auto and self._protocol != "0"
        if number:
            return (("A" if auto else "") + self._protocol,)
        return (("AUTO, " if auto else "") + _PROTOCOL_NAMES[self._protocol],)

    def _set_filter(self, digits: str, *, mask: bool) -> _Reply:
        value = int(digits, 16)
        s = self._settings
        if len(digits) == 3:
            if mask:
                s.mask11 = value & _MAX_STD_ID
            else:
                s.filter11 = value & _MAX_STD_ID
        elif mask:
            s.mask29 = value & _MAX_CAN_ID
        else:
            s.filter29 = value & _MAX_CAN_ID
        return _OK

    def _set_receive_address(self, digits: str) -> _Reply:
        # CRA is CF plus a CM with 1s where a digit is given and 0s under each X ([E]).
        value = int(digits.replace("X", "0"), 16)
        care = int("".join("0" if c == "X" else "F" for c in digits), 16)
        s = self._settings
        if len(digits) == 3:
            s.filter11, s.mask11 = value & _MAX_STD_ID, care & _MAX_STD_ID
        else:
            s.filter29, s.mask29 = value & _MAX_CAN_ID, care & _MAX_CAN_ID
        return _OK

    def _clear_filters(self) -> _Reply:
        s = self._settings
        s.filter11 = s.mask11 = s.filter29 = s.mask29 = 0
        return _OK

    def _switch(self, name: str, on: bool) -> _Reply:
        if not on and (
            (name == "echo" and self.quirks.keeps_echo)
            or (name == "spaces" and self.quirks.ignores_spaces_off)
        ):
            return _OK
        setattr(self._settings, name, on)
        return _OK

    def _restore_defaults(self) -> _Reply:
        self._settings = self._defaults()
        self._protocol, self._auto = self._saved_protocol
        return _OK

    # --- the hostile quirks' output ---------------------------------------------------

    def _endless(self, now: float) -> None:
        """Give the link the endless output it has carried by ``now`` since it began."""
        assert self._endless_since is not None
        rate = self.quirks.throughput
        due = math.floor((now - self._endless_since) * rate + _EPSILON)
        count = due - self._endless_sent
        if count <= 0:
            return
        if count > _MAX_ENDLESS:  # a long gap between calls: the older bytes are lost
            self._endless_sent += count - _MAX_ENDLESS
            count = _MAX_ENDLESS
        rng = self._hostile_rng
        if self.quirks.endless_garbage:
            # Drawn in blocks, so that the bytes do not depend on how they are read.
            while len(self._garbage_pool) < count:
                self._garbage_pool += rng.randbytes(4096)
            data = bytes(self._garbage_pool[:count])
            del self._garbage_pool[:count]
        else:
            data = bytes(rng.choices(_LINE_BYTES, k=count))
        self._link.put(data, self._endless_since + self._endless_sent / rate)
        self._endless_sent += count

    def _flood_until(self, until: float) -> None:
        """Show the flood frames due by ``until`` while monitoring: frame *k* (from 1)
        is due ``k / flood`` seconds after monitoring began."""
        if not self._monitoring or until < self._flood_start or not self._hears():
            return
        rate = self.quirks.flood
        due = math.floor((until - self._flood_start) * rate + _EPSILON)
        self._flood_due = max(self._flood_due, due - _MAX_FLOOD)  # a long gap: skip the oldest
        rng = self._hostile_rng
        ids = _flood_ids()
        while self._monitoring and self._flood_due < due:
            self._flood_due += 1
            at = self._flood_start + self._flood_due / rate
            data = rng.randbytes(rng.randint(0, 8))
            if self._show(rng.choice(ids), data, at, filtered=False):
                self._frames_flooded += 1
        if not self._monitoring_now():  # a frame of the flood filled the buffer
            self._flood_start = math.inf

    # Read through methods where a call may have changed them: mypy keeps an
    # attribute narrowed across method calls.
    def _endless_running(self) -> bool:
        return self._endless_since is not None

    def _monitoring_now(self) -> bool:
        return self._monitoring

    # --- output -----------------------------------------------------------------------

    def _eol(self) -> bytes:
        return b"\r\n" if self._settings.linefeeds else b"\r"

    def _reply(self, lines: tuple[str, ...], at: float) -> None:
        eol = self._eol()
        out = bytearray()
        for line in lines:
            out += self._garble(line.encode("latin-1")) + eol
        out += eol
        if not self.quirks.never_prompts:
            out += b">"
        self._link.put(bytes(out), at)

    def _garble(self, line: bytes) -> bytes:
        if self.quirks.garbage <= 0 or self._rng.random() >= self.quirks.garbage:
            return line
        junk = bytes(self._junk() for _ in range(self._rng.randint(1, 3)))
        at = self._rng.randint(0, len(line))
        self._lines_garbled += 1
        return line[:at] + junk + line[at:]

    def _junk(self) -> int:
        while True:
            byte = self._rng.choice((0x00, self._rng.randrange(0x80, 0x100)))
            if self.quirks.garbage_prompts or byte & 0x3F != ord(">"):
                return byte

    def _hears(self) -> bool:
        return not self.quirks.no_can and self._protocol in _HEARD_PROTOCOLS

    def _passes(self, can_id: int, extended: bool) -> bool:
        s = self._settings
        if extended:
            return can_id & s.mask29 == s.filter29 & s.mask29
        return can_id & s.mask11 == s.filter11 & s.mask11

    def _show(self, can_id: int, data: bytes, at: float, *, filtered: bool = True) -> bool:
        """Show a frame heard while monitoring; whether its line went out whole."""
        extended = can_id > _MAX_STD_ID
        if filtered and not self._passes(can_id, extended):
            self._frames_filtered += 1
            return False
        line = self._garble(self._format(can_id, data, extended))
        eol = self._eol()
        free = self.quirks.buffer_size - self._link.backlog(at)
        if len(line) + len(eol) <= free:
            self._link.put(line + eol, at)
            if filtered:
                self._frames_shown += 1
            return True
        cut = line[: max(0, free)]
        self._monitoring = False
        if filtered:
            self._frames_lost += 1
        self._buffer_full += 1
        prompt = b"" if self.quirks.never_prompts else b">"
        message = (b" " if cut else b"") + b"BUFFER FULL" + eol + eol + prompt
        self._link.put(cut + message, at)
        return False

    def _format(self, can_id: int, data: bytes, extended: bool) -> bytes:
        s = self._settings
        sep = " " if s.spaces else ""
        parts = []
        if s.headers:
            if extended:
                parts.append(sep.join(f"{b:02X}" for b in can_id.to_bytes(4, "big")))
            else:
                parts.append(f"{can_id:03X}")
        if s.dlc:
            parts.append(f"{len(data):X}")
        shown, error = data, False
        if s.auto_format:
            kind = _pci_kind(data)
            if kind is None:
                error = True
            elif kind == "single" and not s.headers:
                shown = data[1 : 1 + (data[0] & 0x0F)]
        if shown:
            parts.append(sep.join(f"{b:02X}" for b in shown))
        text = sep.join(parts) + (" <DATA ERROR" if error else "")
        return text.encode("ascii")


@functools.cache
def _flood_ids() -> tuple[int, ...]:
    """The 11-bit IDs the flood quirk draws from: all but those of ``ami.dbc``."""
    from ..can.dbc import compiled

    known = set(compiled())
    return tuple(can_id for can_id in range(_MAX_STD_ID + 1) if can_id not in known)


def _pci_kind(data: bytes) -> Literal["single", "multi"] | None:
    """The ISO-TP frame type the first byte announces, or None for an invalid one."""
    if not data:
        return None
    kind = data[0] >> 4
    if kind == 0:
        return "single" if 1 <= data[0] & 0x0F <= len(data) - 1 else None
    return "multi" if kind in (1, 2, 3) else None


_Handler = Callable[[Elm327Emulator, re.Match[str]], _Reply]


def _toggle(name: str) -> _Handler:
    return lambda elm, m: elm._switch(name, m[1] == "1")


def _ok(elm: Elm327Emulator, match: re.Match[str]) -> _Reply:
    return _OK


#: The AT commands, after "AT", spaces gone, upper case: pattern -> what it does.
_AT_COMMANDS: Final[tuple[tuple[re.Pattern[str], _Handler], ...]] = tuple(
    (re.compile(pattern), handler)
    for pattern, handler in (
        (r"Z|WS", lambda elm, m: _Special.RESET),
        (r"D", lambda elm, m: elm._restore_defaults()),
        (r"I", lambda elm, m: (elm.version,)),
        (r"@1", lambda elm, m: ("OBDII to RS232 Interpreter",)),
        (r"E([01])", _toggle("echo")),
        (r"L([01])", _toggle("linefeeds")),
        (r"S([01])", _toggle("spaces")),
        (r"H([01])", _toggle("headers")),
        (r"D([01])", _toggle("dlc")),
        (r"CAF([01])", _toggle("auto_format")),
        (r"SP(A?)([0-9A-C])", lambda elm, m: elm._set_protocol(m, save=True)),
        (r"SP00", lambda elm, m: elm._erase_protocol()),
        (r"TP(A?)([0-9A-C])", lambda elm, m: elm._set_protocol(m, save=False)),
        (r"DP", lambda elm, m: elm._describe_protocol(number=False)),
        (r"DPN", lambda elm, m: elm._describe_protocol(number=True)),
        (r"AR|CRA", lambda elm, m: elm._clear_filters()),
        (r"CRA([0-9A-FX]{3}|[0-9A-FX]{8})", lambda elm, m: elm._set_receive_address(m[1])),
        (r"CF([0-9A-F]{3}|[0-9A-F]{8})", lambda elm, m: elm._set_filter(m[1], mask=False)),
        (r"CM([0-9A-F]{3}|[0-9A-F]{8})", lambda elm, m: elm._set_filter(m[1], mask=True)),
        (r"MA", lambda elm, m: _Special.MONITOR),
        (
            r"M[01]|R[01]|V[01]|AL|NL|BI|PC|AT[012]|CFC[01]|CSM[01]|ST[0-9A-F]{2}"
            r"|SH(?:[0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8})|PB[0-9A-F]{4}"
            r"|PP[0-9A-F]{2}(?:ON|OFF)|CP[0-9A-F]{2}|CEA(?:[0-9A-F]{2})?",
            _ok,
        ),
    )
)


# --- WiCAN slcan ----------------------------------------------------------------------------


@attrs.frozen
class SlcanStats:
    """What a :class:`SlcanEmulator` has done so far."""

    #: Command lines carried out (acked, answered or refused).
    commands: int
    #: Frames given to :meth:`SlcanEmulator.bus_frame`.
    frames_seen: int
    #: Frames that became a line.
    frames_sent: int
    #: Frames lost because ``queue_size`` lines were still unsent.
    frames_lost: int
    #: Commands refused (answered BEL with ``errors="lawicel"``, acked anyway by WiCAN).
    errors: int
    #: Bytes queued for the host so far, read or not.
    bytes_queued: int


#: [W]: ``sl_bitrate``, indexed by the digit of ``S0``..``S8``.
_SLCAN_BITRATES: Final = (
    10_000,
    20_000,
    50_000,
    100_000,
    125_000,
    250_000,
    500_000,
    800_000,
    1_000_000,
)
_SLCAN_LETTERS: Final = frozenset(b"OYCLSsaAvVtTrRNZDmMF")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
#: The AMI's bus ([F], [S]: 500 kbit/s).
_AMI_BITRATE: Final = 500_000


class SlcanEmulator:
    """A WiCAN in its default slcan protocol, as bytes: see the module's docstring.

    ``errors`` picks WiCAN's error behaviour (``"wican"``, silence and CR acks) or
    Lawicel's (``"lawicel"``, BEL). ``queue_size`` is how many lines may wait to
    be sent before frames are dropped ([W]: 100). The channel starts closed, at
    500 kbit/s (WiCAN's default ``can_datarate``).
    """

    #: [W] slcan.c's answers.
    VERSION: Final = b"V2011\r"
    SERIAL: Final = b"N43010123\r"
    STATUS: Final = b"F00\r"

    def __init__(
        self,
        *,
        throughput: float = BLE_THROUGHPUT,
        queue_size: int = 100,
        errors: Literal["wican", "lawicel"] = "wican",
    ) -> None:
        if not throughput > 0:
            raise ValueError(f"throughput must be above 0 bytes/s, not {throughput}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        if errors not in ("wican", "lawicel"):
            raise ValueError(f"errors must be 'wican' or 'lawicel', not {errors!r}")
        self.errors: Final = errors
        self.queue_size: Final = queue_size
        self._link = _Link(throughput)
        self._unsent: deque[float] = deque()  # when each queued line will have left
        self._line = bytearray()
        self._line_too_long = False
        self._now = -math.inf
        #: ``None`` while closed, else how it was opened: ``"O"``, ``"L"`` or ``"Y"``.
        self.mode: Literal["O", "L", "Y"] | None = None
        #: The bitrate the channel opens at, bit/s.
        self.bitrate = _AMI_BITRATE
        #: ``Z1``: each frame line ends in a 4-digit timestamp.
        self.timestamps = False
        #: The last ``M`` and ``m`` values (acceptance code and mask; not applied).
        self.acceptance_code = 0
        self.acceptance_mask = 0xFFFFFFFF
        #: Frames the host asked to send, as ``(id, data)`` (a remote frame's data is
        #: empty), for the simulator's bus.
        self.transmitted: list[tuple[int, bytes]] = []
        self._commands = 0
        self._frames_seen = 0
        self._frames_sent = 0
        self._frames_lost = 0
        self._errors = 0

    @property
    def is_open(self) -> bool:
        """The channel is open: bus frames become lines."""
        return self.mode is not None

    @property
    def stats(self) -> SlcanStats:
        """Counters since the emulator was made."""
        return SlcanStats(
            commands=self._commands,
            frames_seen=self._frames_seen,
            frames_sent=self._frames_sent,
            frames_lost=self._frames_lost,
            errors=self._errors,
            bytes_queued=self._link.queued,
        )

    def write(self, data: bytes, now: float) -> None:
        """Bytes the host wrote at ``now``, split anywhere; commands end with CR."""
        _check_time(now, self._now)
        self._now = now
        for byte in data:
            if byte == _CR:
                line = None if self._line_too_long else bytes(self._line)
                self._line.clear()
                self._line_too_long = False
                self._command(line, now)
            elif len(self._line) < _MAX_SLCAN_LINE:
                self._line.append(byte)
            else:
                self._line_too_long = True

    def bus_frame(self, can_id: int, data: bytes, now: float) -> None:
        """A frame seen on the car's bus at ``now`` (an ID above 0x7FF is 29-bit)."""
        _check_frame(can_id, data)
        _check_time(now, self._now)
        self._now = now
        self._frames_seen += 1
        if self.mode is None or self.bitrate != _AMI_BITRATE:
            return
        if self._waiting(now) >= self.queue_size:
            self._frames_lost += 1
            return
        text = f"T{can_id:08X}" if can_id > _MAX_STD_ID else f"t{can_id:03X}"
        text += f"{len(data)}{data.hex().upper()}"
        if self.timestamps:
            text += f"{math.floor(now * 1000 + _EPSILON) % 60000:04X}"
        self._send(text.encode("ascii") + b"\r", now)
        self._frames_sent += 1

    def read(self, now: float) -> bytes:
        """The bytes the adapter has sent by ``now`` and that were not read before."""
        _check_time(now, self._now)
        self._now = now
        return self._link.take(now)

    def __repr__(self) -> str:
        state = "closed" if self.mode is None else f"open ({self.mode})"
        return f"<SlcanEmulator {state} at {self.bitrate} bit/s>"

    def _waiting(self, now: float) -> int:
        """Lines queued for Bluetooth and not yet on their way at ``now``."""
        while self._unsent and self._unsent[0] <= now:
            self._unsent.popleft()
        return len(self._unsent)

    def _send(self, line: bytes, now: float) -> None:
        self._waiting(now)
        self._unsent.append(self._link.put(line, now))

    # --- commands ---------------------------------------------------------------------

    def _command(self, line: bytes | None, now: float) -> None:
        lawicel = self.errors == "lawicel"
        if line is None:  # longer than any command
            answer: bytes | None = None
        else:
            line = line.lstrip(b"\n")
            if not lawicel:
                # [W] skips a byte it does not know at the start of a command.
                skip = next((i for i, b in enumerate(line) if b in _SLCAN_LETTERS), len(line))
                line = line[skip:]
            if not line:
                return
            answer = self._carry_out(line)
        self._commands += 1
        if answer is None:
            self._errors += 1
            answer = _BEL if lawicel else b"\r"
        self._send(answer, now)

    def _carry_out(self, line: bytes) -> bytes | None:
        """Do what ``line`` says; its answer, or None if it is refused."""
        lawicel = self.errors == "lawicel"
        if line[0] not in _SLCAN_LETTERS:
            return None
        letter, body = chr(line[0]), line[1:]
        # [W] ignores whatever follows a complete command; Lawicel's protocol does not.
        sizes = {"S": 1, "s": 2, "a": 1, "A": 1, "D": 1, "Z": 1, "M": 8, "m": 8}
        if letter in sizes:
            size = sizes[letter]
            if len(body) < size or (lawicel and len(body) > size):
                return None
            body = body[:size]
        elif letter in "tTrR":
            return self._transmit(letter, body)
        elif lawicel and body:
            return None
        if letter in "OLY":
            if self.mode is not None:
                return None
            self.mode = "L" if letter == "L" else "Y" if letter == "Y" else "O"
        elif letter == "C":
            if self.mode is None:
                return None
            self.mode = None
        elif letter == "S":
            digit = body[0] - 0x30
            if not 0 <= digit < len(_SLCAN_BITRATES) or self.mode is not None:
                return None  # [W]: out of range, or refused by the running controller
            self.bitrate = _SLCAN_BITRATES[digit]
        elif letter == "Z":
            if body not in (b"0", b"1"):
                return None
            self.timestamps = body == b"1"
        elif letter in "Mm":
            if not set(body) <= _HEX_DIGITS:
                return None
            if letter == "M":
                self.acceptance_code = int(body, 16)
            else:
                self.acceptance_mask = int(body, 16)
        elif letter in "vV":
            return self.VERSION
        elif letter == "N":
            return self.SERIAL
        elif letter == "F":
            return self.STATUS
        return b"\r"

    def _transmit(self, letter: str, body: bytes) -> bytes | None:
        digits = 8 if letter in "TR" else 3
        if len(body) < digits + 1 or not set(body[: digits + 1]) <= _HEX_DIGITS:
            return None
        can_id, dlc = int(body[:digits], 16), int(body[digits : digits + 1], 16)
        payload = body[digits + 1 :]
        remote = letter in "rR"
        expected = 0 if remote else 2 * dlc
        if dlc > 8 or can_id > _MAX_CAN_ID or len(payload) < expected:
            return None
        if self.errors == "lawicel" and len(payload) > expected:
            return None
        if not set(payload[:expected]) <= _HEX_DIGITS:
            return None
        if self.mode not in ("O", "Y"):
            return None  # closed, or listening only: nothing goes on the bus
        data = b"" if remote else bytes.fromhex(payload[:expected].decode("ascii"))
        self.transmitted.append((can_id, data))
        if self.errors == "lawicel":
            return b"z\r" if letter in "tr" else b"Z\r"
        return b"\r"
