"""ELM327 monitor-mode output (``AT MA``, headers on) back to CAN frames, without I/O.

:class:`MonitorParser` takes the adapter's bytes as they arrive, cut anywhere (BLE
notifications of 20 bytes), and returns the frames they complete, in order. Every
other line is read for what it says about the adapter and never raises: the prompt,
``BUFFER FULL``, ``STOPPED``, ``?`` and the error messages set *conditions* (plain
attributes, read after each :meth:`~MonitorParser.feed` and cleared by
:meth:`~MonitorParser.clear_conditions`, as h11's connection states are read after
feeding it); echoes, ``OK``, banners, ``SEARCHING...``, NUL bytes and garbage are
counted and dropped.

What a frame line looks like, and what is done with it (sources: [E] ELM327 datasheet
ELM327DSJ; [K] Linux ``drivers/net/can/can327.c``):

* 11-bit, ``AT H1``, spaces on or off: ``580 10 00 8C 14 00 55 00 00`` and
  ``580100008C1400550000`` give ``(0x580, b"\\x10\\x00\\x8c\\x14\\x00\\x55\\x00\\x00")``.
  Spaces between bytes are optional (clones ignore ``AT S0``; ``bytes.fromhex`` takes
  any whitespace between two digits).
* With the DLC (``AT D1``, [K]: ``123 D PL PL ...``): taken **with spaces on only**,
  and the DLC must equal the number of bytes (a line cut short is not a frame).
  Without spaces a DLC digit cannot be told from a 29-bit header, so a spaces-off line
  of even length is read as 29-bit; the session sends ``AT D0`` to be sure.
* 29-bit (``18 DA F1 10 ...``, ``18DAF110...``): recognised, **counted in
  ``stats.extended`` and dropped**. The AMI's messages are all 11-bit, the output of
  :meth:`~MonitorParser.feed` has no room for an "extended" flag, and handing on a
  29-bit ID below 0x800 would pass it off as a standard one.
* Remote frames (``... RTR``, [K]): counted in ``stats.remote``, dropped.
* Odd digit counts, more than 8 data bytes, anything not hex: not frames.
* ``BUFFER FULL`` glued to the end of the line it cut short ([K]: "may appear on the
  same line as the last (usually incomplete) data frame") sets the condition and the
  cut frame is dropped.

Line ends are CR, or CR LF with ``AT L1`` (an LF counts as a CR; the empty lines that
makes are skipped). The prompt ``>`` ends a line too; a byte whose low 6 bits are
those of ``>`` (0x3E, 0x7E, 0xBE, 0xFE) is taken as the prompt, as [K] does
(``can327_is_ready_char``: "Bits 0xc0 are sometimes set (randomly) ... Probably bad
hardware."). Text between the last CR and a prompt is never a frame (the ELM327 ends
every line with a CR before its prompt, [E] p. 21). NUL bytes are dropped ([K]: the
PIC "may inadvertently insert" them).

Memory is bounded: the parser holds at most one partial line of :data:`MAX_LINE`
characters; a longer one is discarded up to its end (CR or prompt) and counted in
``stats.overlong``. Work per byte is constant, whatever the input.

>>> parser = MonitorParser()
>>> parser.feed(b"580 10 00 8C 14 00 55 00 00\\r581 00")      # 1.6 A, 52.60 V, 85 %
[(1408, b'\\x10\\x00\\x8c\\x14\\x00U\\x00\\x00')]
>>> parser.feed(b" 00\\rBUFFER FULL\\r>")
[(1409, b'\\x00\\x00')]
>>> parser.buffer_full, parser.prompt
(True, True)
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from ._text import ELM_CLEAN, ELM_DELETE, HEADERS, MAX_DATA, MAX_EXTENDED_ID, is_hex

__all__ = ["MAX_LINE", "MonitorParser", "MonitorStats"]

#: The longest line that can still mean something: a 29-bit frame with spaces and a
#: DLC and 8 bytes (``18 DA F1 10 8 11 22 33 44 55 66 77 88``, 37 characters) with
#: ``BUFFER FULL`` glued on (11). Anything longer is neither a frame nor a condition.
MAX_LINE: Final = 48

#: The adapter's messages that report a problem on the bus or in the adapter ([E],
#: [K] ``can327_parse_error``; ``ERRxx`` is matched apart). ``<DATA ERROR`` and
#: ``<RX ERROR`` may follow a message on its line ([E]), hence the suffix match.
ERROR_MESSAGES: Final = (
    "CAN ERROR",
    "BUS ERROR",
    "BUS BUSY",
    "FB ERROR",
    "<RX ERROR",
    "<DATA ERROR",
    "DATA ERROR",
    "NO DATA",
    "UNABLE TO CONNECT",
    "LV RESET",
    "ACT ALERT",
)


# The frame lines the fast path leaves to the slow one (see the module docstring).
_H2 = "[0-9A-Fa-f]{2}"
_STD = "[0-7][0-9A-Fa-f]{2}"  # an 11-bit ID: 0x000 to 0x7FF
_SPACED: Final = re.compile(
    rf"(?:(?P<std>{_STD})|(?P<ext>{_H2} {_H2} {_H2} {_H2}))"
    rf"(?: (?P<dlc>[0-9A-Fa-f]))?(?P<data>(?: +{_H2})*)(?P<rtr> *RTR)?"
)
_UNSPACED: Final = re.compile(
    rf"(?:(?P<std>{_STD})|(?P<ext>[0-9A-Fa-f]{{8}})(?P<data>(?:{_H2})*))(?P<rtr>RTR)?"
)
#: What _slow_frame returns for a frame that is recognised and not handed over.
_DROPPED: Final = (-1, b"")


@attrs.frozen
class MonitorStats:
    """What a :class:`MonitorParser` has seen, since it was made."""

    #: 11-bit data frames returned.
    frames: int = 0
    #: 29-bit frames recognised and dropped.
    extended: int = 0
    #: Remote frames (``RTR``) recognised and dropped.
    remote: int = 0
    #: Non-empty lines that were no frame (noise, echoes, messages, cut or bad frames).
    lines_ignored: int = 0
    #: Lines longer than :data:`MAX_LINE`, discarded.
    overlong: int = 0
    #: Prompts seen.
    prompts: int = 0
    #: ``BUFFER FULL`` messages.
    buffer_fulls: int = 0
    #: ``STOPPED`` messages.
    stops: int = 0
    #: Error messages (:data:`ERROR_MESSAGES`, ``ERRxx``).
    errors: int = 0


class MonitorParser:
    """Bytes of an ELM327 in ``AT MA`` mode in, ``(can_id, data)`` frames out.

    Never raises on input. After each :meth:`feed`, the conditions say what else the
    adapter reported (each stays set until :meth:`clear_conditions`):

    * :attr:`prompt`: the adapter is back at its ``>`` prompt, monitoring has ended;
    * :attr:`buffer_full`: it said ``BUFFER FULL`` (its transmit buffer overflowed);
    * :attr:`stopped`: it said ``STOPPED`` (a character it received stopped it);
    * :attr:`unknown_command`: it answered ``?`` (it did not understand a command);
    * :attr:`error`: the last error message it printed (``"CAN ERROR"``...), or None.
    """

    __slots__ = (
        "_buffer_fulls",
        "_discarding",
        "_errors",
        "_extended",
        "_frames",
        "_ignored",
        "_overlong",
        "_pending",
        "_prompts",
        "_remote",
        "_stops",
        "buffer_full",
        "error",
        "prompt",
        "stopped",
        "unknown_command",
    )

    def __init__(self) -> None:
        self._pending = ""  # the partial line after the last line end, < MAX_LINE
        self._discarding = False  # inside an overlong line: drop bytes up to its end
        self._frames = self._extended = self._remote = self._ignored = 0
        self._overlong = self._prompts = self._buffer_fulls = self._stops = self._errors = 0
        self.prompt = self.buffer_full = self.stopped = self.unknown_command = False
        self.error: str | None = None

    @property
    def stats(self) -> MonitorStats:
        """The counters, as one frozen value."""
        return MonitorStats(
            frames=self._frames,
            extended=self._extended,
            remote=self._remote,
            lines_ignored=self._ignored,
            overlong=self._overlong,
            prompts=self._prompts,
            buffer_fulls=self._buffer_fulls,
            stops=self._stops,
            errors=self._errors,
        )

    @property
    def buffered(self) -> int:
        """Characters held of the line in progress: never more than :data:`MAX_LINE`."""
        return len(self._pending)

    def clear_conditions(self) -> None:
        """Forget the conditions (not the counters), e.g. when monitoring starts again."""
        self.prompt = self.buffer_full = self.stopped = self.unknown_command = False
        self.error = None

    def reset(self) -> None:
        """Forget the partial line and the conditions: the next byte starts a line."""
        self._pending = ""
        self._discarding = False
        self.clear_conditions()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The frames completed by ``data`` (any number of bytes, cut anywhere), in order."""
        # Tuned (benchmarks/bench_obd.py: within 3x a floor that only splits lines
        # and calls bytes.fromhex). One C-level pass cleans the chunk; latin-1 maps
        # every byte to one character, so decoding never fails and non-ASCII bytes
        # are rejected later by fromhex; lines are then split by str.split, in C.
        text = data.translate(ELM_CLEAN, ELM_DELETE).decode("latin-1")
        if self._discarding:
            text = self._skip_overlong(text)
        if ">" in text:
            return self._feed_prompts(self._pending + text)
        lines = (self._pending + text).split("\r")
        pending = lines.pop()
        if len(pending) > MAX_LINE:
            pending = self._overlong_line()
        self._pending = pending
        return self._lines(lines) if lines else []

    def _lines(self, lines: list[str]) -> list[tuple[int, bytes]]:
        # The hot loop. The common line, an 11-bit frame without DLC, costs one dict
        # look-up (which checks and converts the header, see _text.HEADERS) and one
        # bytes.fromhex; everything else fails one of them, or is too long, and goes
        # to _other. fromhex skips the spaces of "580 10 00 ..." and the lack of them
        # alike, and raises on odd digit counts (a 29-bit header without spaces leaves
        # an odd count after 3 digits) and on anything not hex.
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        header = HEADERS.get
        fromhex = bytes.fromhex
        for line in lines:
            can_id = header(line[:3])
            if can_id is not None:
                try:
                    payload = fromhex(line[3:])
                except ValueError:
                    pass
                else:
                    # fromhex skips any run of whitespace: the length check keeps
                    # "580" + 1,000 spaces + "10" from being a frame.
                    if len(payload) <= MAX_DATA and len(line) <= MAX_LINE:
                        append((can_id, payload))
                        continue
            if line:
                frame = self._other(line)
                if frame is not None:
                    append(frame)
        self._frames += len(frames)
        return frames

    def _other(self, line: str) -> tuple[int, bytes] | None:
        """A line the fast path did not take: a frame it leaves, a condition, or noise."""
        if len(line) > MAX_LINE:
            self._overlong += 1
            return None
        text = line.strip()
        if not text:
            return None
        match = (_SPACED if " " in text else _UNSPACED).fullmatch(text)
        frame = None if match is None else self._slow_frame(match)
        if frame is None:
            self._condition(text)
            return None
        return None if frame is _DROPPED else frame

    def _slow_frame(self, match: re.Match[str]) -> tuple[int, bytes] | None:
        """The frame of a line matching _SPACED or _UNSPACED; _DROPPED if it is one
        that is not handed over (29-bit, remote), None if it is no frame after all."""
        data = (match.group("data") or "").replace(" ", "")
        if len(data) > 2 * MAX_DATA:
            return None
        dlc = match.groupdict().get("dlc")
        if dlc is not None and int(dlc, 16) != len(data) // 2 and not match.group("rtr"):
            return None  # cut short (the DLC says more): not a frame
        if match.group("ext") is not None:
            if int(match.group("ext").replace(" ", ""), 16) > MAX_EXTENDED_ID:
                return None
            self._extended += 1
            return _DROPPED
        if match.group("rtr"):
            self._remote += 1
            return _DROPPED
        return HEADERS[match.group("std")], bytes.fromhex(data)

    def _condition(self, text: str) -> None:
        """Note what a line that is no frame says about the adapter."""
        self._ignored += 1
        if text.endswith("BUFFER FULL"):
            self.buffer_full = True
            self._buffer_fulls += 1
        elif text.endswith("STOPPED"):
            self.stopped = True
            self._stops += 1
        elif text == "?":
            self.unknown_command = True
        elif text.endswith(ERROR_MESSAGES) or (
            len(text) == 5 and text.startswith("ERR") and is_hex(text[3:])
        ):
            self.error = next((m for m in ERROR_MESSAGES if text.endswith(m)), text)
            self._errors += 1

    def _feed_prompts(self, text: str) -> list[tuple[int, bytes]]:
        """``text`` (the partial line included) holds at least one prompt."""
        *before, after = text.split(">")
        frames: list[tuple[int, bytes]] = []
        for part in before:
            lines = part.split("\r")
            tail = lines.pop()  # no CR before the prompt: never a frame
            frames += self._lines(lines)
            if len(tail) > MAX_LINE:
                self._overlong += 1
            elif tail.strip():
                self._condition(tail.strip())
            self.prompt = True
            self._prompts += 1
        lines = after.split("\r")
        pending = lines.pop()
        if len(pending) > MAX_LINE:
            pending = self._overlong_line()
        self._pending = pending
        if lines:
            frames += self._lines(lines)
        return frames

    def _overlong_line(self) -> str:
        """The partial line outgrew MAX_LINE: count it and drop it up to its end."""
        self._overlong += 1
        self._discarding = True
        return ""

    def _skip_overlong(self, text: str) -> str:
        """Drop ``text`` up to the end of the overlong line (a CR, or a prompt, kept)."""
        cr = text.find("\r")
        prompt = text.find(">")
        ends = [i for i in (cr, prompt) if i >= 0]
        if not ends:
            return ""
        self._discarding = False
        end = min(ends)
        return text[end + 1 :] if end == cr else text[end:]
