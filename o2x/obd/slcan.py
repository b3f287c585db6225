"""SLCAN (Lawicel ASCII) as a WiCAN sends it, back to CAN frames; and the session opening it.

No I/O here: bytes in, frames and actions out, time passed in as ``now`` seconds.

What a WiCAN sends ([W] meatpiHQ/wican-fw ``main/slcan.c``, ``slcan_parse_frame``):
``t`` + 3 hex ID digits + the DLC digit + 2 hex digits per data byte + an optional
4-digit timestamp + CR for an 11-bit frame (``t580810008C1400550000\\r``, 22 bytes
with 8 data bytes); ``T`` + 8 ID digits for a 29-bit one; ``r``/``R`` for remote frames
(no data). Each command is answered by a lone CR ([W]: ``ack[] = "\\r"``); the usual
Lawicel error answer is BEL (0x07), and Lawicel adapters answer a transmit with
``z``/``Z``. :class:`SlcanParser` reads all of them:

* 11-bit data frames are returned; 29-bit (``T``) and remote (``r``, ``R``) frames are
  counted and dropped (as :class:`~o2x.obd.monitor.MonitorParser` drops them: the AMI's
  messages are 11-bit and the output carries no "extended" flag);
* the timestamp ([W]: milliseconds modulo 60,000 of the adapter's own tick count,
  only with ``Z1``) is checked and dropped: it wraps every minute and is on a clock
  o2x cannot relate to its own, so the consumer stamps frames when they arrive;
* acknowledgements and BELs are counted in the conditions :attr:`SlcanParser.acks`
  and :attr:`SlcanParser.bells` (cleared by :meth:`SlcanParser.clear_conditions`);
  ``z``/``Z`` (answers to a transmit, which o2x never sends), version and serial
  answers and garbage are counted and dropped. Nothing raises.

Memory is bounded: at most one partial line of :data:`MAX_LINE` characters is held;
a longer one is discarded up to its end and counted.

:class:`SlcanSession` opens the channel: ``C`` (close: a BEL means it was closed
already, which is fine), ``S6`` (500 kbit/s, [W] ``sl_bitrate[6] = CAN_500K``), then
``L`` (listen only, [W] ``can_set_silent(1)``: o2x only reads, and a silent node
cannot disturb the car's bus) or ``O`` (normal open) if ``listen_only=False`` or if
the adapter refuses ``L`` with a BEL. Each waits for its CR (or BEL) for
``command_timeout`` seconds. [W] never answers a command it does not know (no BEL),
hence the timeout, which names the command.

States (see :class:`~o2x.obd.actions.SessionState`)::

    IDLE --start--> INITIALISING --open acknowledged--> MONITORING --stop--> STOPPING
    INITIALISING --BEL to S6 or O / no answer in time--> FAILED
    STOPPING --acknowledged, refused or timed out--> STOPPED
    IDLE or INITIALISING --stop--> STOPPED

>>> session = SlcanSession()
>>> session.start(now=0.0)
[Send(data=b'C\\r')]
>>> session.received(b"\\r", now=0.1)
[Send(data=b'S6\\r')]
>>> session.received(b"\\r", now=0.2)
[Send(data=b'L\\r')]
>>> session.received(b"\\rt580810008C1400550000\\r", now=0.3)
[Monitoring(), Frames(frames=[(1408, b'\\x10\\x00\\x8c\\x14\\x00U\\x00\\x00')])]
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from ..errors import AdapterError, AdapterSpeaksOther, AdapterTimeout, AdapterUnsupported
from ._text import HEADERS, MAX_DATA, MAX_EXTENDED_ID, is_hex
from .actions import Action, Frames, Monitoring, Send, SessionFailed, SessionState

__all__ = ["MAX_LINE", "SlcanParser", "SlcanSession", "SlcanSessionStats", "SlcanStats"]

#: The longest SLCAN line: ``T`` + 8 ID digits + DLC + 16 data digits + 4 timestamp
#: digits ([W] ``slcan.h``: ``SLCAN_MTU 30``, "T1111222281122334455667788EA5F").
MAX_LINE: Final = 30

#: ``t`` and the 3 ID digits -> the ID: one look-up checks both (see _text.HEADERS).
_STANDARD: Final[dict[str, int]] = {"t" + digits: can_id for digits, can_id in HEADERS.items()}
#: The DLC digit -> the DLC (classic CAN: 0 to 8).
_DLC: Final[dict[str, int]] = {str(n): n for n in range(MAX_DATA + 1)}
#: The DLC digit of a frame of n bytes, at index n (no digit past 8: "").
_DLC_TEXT: Final = (*(str(n) for n in range(MAX_DATA + 1)), "", "", "")
#: Digits of a timestamp, after the data.
_TIMESTAMP: Final = 4

# NUL and LF are deleted (SLCAN lines end with a lone CR; an LF would otherwise make an
# empty line, which reads as an acknowledgement).
_BEL: Final = "\x07"


@attrs.frozen
class SlcanStats:
    """What a :class:`SlcanParser` has seen, since it was made."""

    #: 11-bit data frames returned.
    frames: int = 0
    #: Of those, frames that carried a timestamp (dropped, see the module docstring).
    timestamped: int = 0
    #: 29-bit data frames (``T``), dropped.
    extended: int = 0
    #: Remote frames (``r``, ``R``), dropped.
    remote: int = 0
    #: Acknowledgements (lone CRs).
    acks: int = 0
    #: Errors (BEL).
    bells: int = 0
    #: Non-empty lines that were no frame (``z``/``Z``, ``V``/``N``/``F`` answers, bad frames).
    lines_ignored: int = 0
    #: Lines longer than :data:`MAX_LINE`, discarded.
    overlong: int = 0


class SlcanParser:
    """Bytes of a SLCAN adapter in, ``(can_id, data)`` frames out (11-bit data frames).

    After each :meth:`feed`, :attr:`acks` and :attr:`bells` count the
    acknowledgements (lone CRs) and errors (BEL) seen since :meth:`clear_conditions`.

    >>> parser = SlcanParser()
    >>> parser.feed(b"t58021000\\rt71")
    [(1408, b'\\x10\\x00')]
    >>> parser.feed(b"420102EA5F\\r\\r")     # 0x714, 2 bytes, timestamp 0xEA5F
    [(1812, b'\\x01\\x02')]
    >>> parser.acks
    1
    """

    __slots__ = (
        "_acks",
        "_bells",
        "_discarding",
        "_extended",
        "_frames",
        "_ignored",
        "_overlong",
        "_pending",
        "_remote",
        "_timestamped",
        "acks",
        "bells",
    )

    def __init__(self) -> None:
        self._pending = ""
        self._discarding = False
        self._frames = self._timestamped = self._extended = self._remote = 0
        self._acks = self._bells = self._ignored = self._overlong = 0
        self.acks = self.bells = 0

    @property
    def stats(self) -> SlcanStats:
        """The counters, as one frozen value."""
        return SlcanStats(
            frames=self._frames,
            timestamped=self._timestamped,
            extended=self._extended,
            remote=self._remote,
            acks=self._acks,
            bells=self._bells,
            lines_ignored=self._ignored,
            overlong=self._overlong,
        )

    @property
    def buffered(self) -> int:
        """Characters held of the line in progress: never more than :data:`MAX_LINE`."""
        return len(self._pending)

    def clear_conditions(self) -> None:
        """Forget the acknowledgements and BELs seen so far (not the counters)."""
        self.acks = self.bells = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The frames completed by ``data`` (any number of bytes, cut anywhere), in order."""
        # Tuned (benchmarks/bench_obd.py): latin-1 maps every byte to one character, so
        # decoding never fails and non-ASCII bytes are refused later by fromhex; two
        # `in` tests on the str cost less than a bytes.translate pass, and NUL and LF
        # are rare. Lines are split by str.split, in C.
        text = data.decode("latin-1")
        if "\x00" in text or "\n" in text:
            text = text.replace("\x00", "").replace("\n", "")
        if self._discarding:
            cr = text.find("\r")
            bel = text.find(_BEL)
            ends = [i for i in (cr, bel) if i >= 0]
            if not ends:
                return []
            self._discarding = False
            end = min(ends)
            text = text[end + 1 :] if end == cr else text[end:]
        text = self._pending + text
        frames: list[tuple[int, bytes]] = []
        if _BEL in text:
            *before, text = text.split(_BEL)
            for part in before:
                lines = part.split("\r")
                tail = lines.pop()  # the line the BEL ends: an error answer, never a frame
                frames += self._lines(lines)
                if tail:
                    self._ignored += 1
                self.bells += 1
                self._bells += 1
        lines = text.split("\r")
        pending = lines.pop()
        if len(pending) > MAX_LINE:
            self._overlong += 1
            self._discarding = True
            pending = ""
        self._pending = pending
        if lines:
            frames += self._lines(lines)
        return frames

    def _lines(self, lines: list[str]) -> list[tuple[int, bytes]]:
        # The hot loop (benchmarks/bench_obd.py: within 3x a floor that only splits
        # lines and calls bytes.fromhex). A standard frame without a timestamp costs
        # one dict look-up (the "tIII" header, a check and a conversion in one, see
        # _text.HEADERS) and one bytes.fromhex; then the DLC digit must be that of the
        # bytes found, and those must have taken every character (fromhex would skip
        # spaces): two comparisons, no second look-up.
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        standard = _STANDARD.get
        dlc_text = _DLC_TEXT
        fromhex = bytes.fromhex
        for line in lines:
            can_id = standard(line[:4])
            if can_id is not None:
                try:
                    payload = fromhex(line[5:])
                except ValueError:
                    pass
                else:
                    count = len(payload)
                    if 2 * count + 5 == len(line) and line[4] == dlc_text[count]:
                        append((can_id, payload))
                        continue
                    frame = self._timestamped_frame(can_id, line, payload)
                    if frame is not None:
                        append(frame)
                        continue
            if line:
                self._other(line)
            else:
                self.acks += 1
                self._acks += 1
        self._frames += len(frames)
        return frames

    def _timestamped_frame(self, can_id: int, line: str, raw: bytes) -> tuple[int, bytes] | None:
        """A standard frame whose digits ``raw`` holds, if its last 2 bytes are a timestamp."""
        dlc = _DLC.get(line[4:5])
        if dlc is None or len(raw) != dlc + _TIMESTAMP // 2 or 2 * len(raw) + 5 != len(line):
            return None
        self._timestamped += 1
        return can_id, raw[:dlc]

    def _other(self, line: str) -> None:
        """A non-empty line the fast path did not take."""
        if len(line) > MAX_LINE:
            self._overlong += 1
            return
        kind, body = line[0], line[1:]
        if kind == "T" and _extended_frame(body):
            self._extended += 1
        elif kind in "rR" and _remote_frame(kind, body):
            self._remote += 1
        else:
            self._ignored += 1


def _extended_frame(body: str) -> bool:
    """Whether ``body`` (after the ``T``) is a 29-bit data frame."""
    if len(body) < 9 or not is_hex(body[:8]) or int(body[:8], 16) > MAX_EXTENDED_ID:
        return False
    dlc = _DLC.get(body[8])
    rest = body[9:]
    return dlc is not None and len(rest) in (2 * dlc, 2 * dlc + _TIMESTAMP) and is_hex(rest or "0")


def _remote_frame(kind: str, body: str) -> bool:
    """Whether ``body`` (after the ``r`` or ``R``) is a remote frame: ID, DLC, timestamp?"""
    id_digits = 3 if kind == "r" else 8
    if len(body) not in (id_digits + 1, id_digits + 1 + _TIMESTAMP):
        return False
    return is_hex(body[:id_digits]) and body[id_digits] in _DLC and is_hex(body[id_digits:])


# --- the session -------------------------------------------------------------------


@attrs.frozen
class SlcanSessionStats:
    """What a :class:`SlcanSession` has done."""

    #: Commands sent.
    commands: int = 0
    #: Frames handed over in :class:`~o2x.obd.actions.Frames`.
    frames: int = 0
    #: Frames read before the channel was opened by this session, dropped.
    dropped: int = 0
    #: Times stop() gave up waiting for the adapter's answer.
    stop_timeouts: int = 0


#: Commands, by step. The bitrate: [W] ``sl_bitrate[]``, index 6 = 500 kbit/s.
_CLOSE: Final = "C"
_BITRATE: Final = "S6"
_LISTEN: Final = "L"
_OPEN: Final = "O"


class SlcanSession:
    """The exchange with a SLCAN adapter (a WiCAN): open the channel, then read frames.

    Drive it like :class:`~o2x.obd.elm327.Elm327Session`: call :meth:`start`, hand
    every notification to :meth:`received`, call :meth:`tick` when ``now`` reaches
    :attr:`deadline`, and carry out the actions each returns, in order.
    """

    def __init__(self, *, command_timeout: float = 2.0, listen_only: bool = True) -> None:
        self.command_timeout = command_timeout
        self.listen_only = listen_only
        self.state = SessionState.IDLE
        #: When the adapter's answer is due (``now`` seconds); ``math.inf`` if none is.
        self.deadline = math.inf
        self.parser = SlcanParser()
        self._command: str | None = None  # the command awaiting its answer
        self._commands = self._frames = self._dropped = self._stop_timeouts = 0

    @property
    def stats(self) -> SlcanSessionStats:
        """The counters, as one frozen value."""
        return SlcanSessionStats(
            commands=self._commands,
            frames=self._frames,
            dropped=self._dropped,
            stop_timeouts=self._stop_timeouts,
        )

    def start(self, now: float) -> list[Action]:
        """Begin: close the channel (it may have been left open), set the bitrate, open it."""
        if self.state is not SessionState.IDLE:
            raise RuntimeError(f"start() is for an idle session; this one is {self.state.value}")
        self.state = SessionState.INITIALISING
        return [self._send(_CLOSE, now)]

    def received(self, data: bytes, now: float) -> list[Action]:
        """Bytes from the adapter (any split)."""
        if self.state in (SessionState.IDLE, SessionState.STOPPED, SessionState.FAILED):
            return []
        if self.state is SessionState.INITIALISING and b">" in data:
            # No SLCAN answer holds a '>': an ELM327's prompt does. A WiCAN can be
            # set to its elm327 protocol, and then its CR answers look like acks.
            return self._fail(
                AdapterSpeaksOther(
                    f"the adapter answers {self._command} with an ELM327 prompt: it is "
                    "set to its elm327 protocol, not slcan",
                    protocol="elm327",
                )
            )
        frames = self.parser.feed(data)
        actions: list[Action] = []
        if self.state is SessionState.INITIALISING and self._command in (_CLOSE, _BITRATE):
            self._dropped += len(frames)  # not from the channel as this session set it
            frames = []
        if self.parser.acks or self.parser.bells:
            refused = bool(self.parser.bells)
            self.parser.clear_conditions()
            actions += self._answered(refused, now)
            if actions and isinstance(actions[-1], SessionFailed):
                return actions
        if frames:
            self._frames += len(frames)
            actions.append(Frames(frames))
        return actions

    def tick(self, now: float) -> list[Action]:
        """Call when ``now >= deadline``: an answer that did not come in time."""
        if now < self.deadline:
            return []
        self.deadline = math.inf
        if self.state is SessionState.STOPPING:
            self._stop_timeouts += 1
            self.state = SessionState.STOPPED
            return []
        if self.state is not SessionState.INITIALISING:
            return []
        return self._fail(
            AdapterTimeout(
                f"the SLCAN adapter did not answer {self._command!r} within "
                f"{self.command_timeout:g} s; is it set to the SLCAN protocol?"
            )
        )

    def stop(self, now: float) -> list[Action]:
        """Close the channel (``C``) and wait for the answer; STOPPED when it comes."""
        if self.state in (SessionState.IDLE, SessionState.INITIALISING):
            self.state = SessionState.STOPPED
            self.deadline = math.inf
            return []
        if self.state is not SessionState.MONITORING:
            return []
        self.state = SessionState.STOPPING
        self.parser.clear_conditions()
        return [self._send(_CLOSE, now)]

    def _answered(self, refused: bool, now: float) -> list[Action]:
        command = self._command
        if self.state is SessionState.STOPPING:
            self.state = SessionState.STOPPED
            self.deadline = math.inf
            return []
        if self.state is not SessionState.INITIALISING:
            return []  # a stray answer while monitoring
        if command == _CLOSE:  # refused: the channel was closed already
            return [self._send(_BITRATE, now)]
        if command == _BITRATE:
            if refused:
                return self._fail(
                    AdapterUnsupported(
                        "the SLCAN adapter refused S6 (500 kbit/s, the car's bitrate)"
                    )
                )
            return [self._send(_LISTEN if self.listen_only else _OPEN, now)]
        if command == _LISTEN and refused:
            return [self._send(_OPEN, now)]  # no listen-only mode: open normally
        if refused:
            return self._fail(AdapterError("the SLCAN adapter refused to open the channel (O)"))
        self.state = SessionState.MONITORING
        self.deadline = math.inf
        self._command = None
        return [Monitoring()]

    def _send(self, command: str, now: float) -> Send:
        self._command = command
        self._commands += 1
        self.deadline = now + self.command_timeout
        return Send(command.encode("ascii") + b"\r")

    def _fail(self, error: AdapterError) -> list[Action]:
        self.state = SessionState.FAILED
        self.deadline = math.inf
        return [SessionFailed(error)]
