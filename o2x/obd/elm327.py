"""The exchange with an ELM327-compatible adapter: set it up, monitor, restart, stop. No I/O.

Sans-I/O, like h11: :class:`Elm327Session` owns no link, task or clock. Its driver
(the adapter link, ``o2x/obd/link.py``, under the BLE source ``o2x/dongle/source.py``)
calls it and carries out the actions it returns (:mod:`o2x.obd.actions`), in order::

    session = Elm327Session()                    # the CAN filter comes from ami.dbc
    do(session.start(now))                       # Send(b"ATZ\\r")
    on every notification:  do(session.received(data, now))
    when now >= session.deadline:  do(session.tick(now))
    to leave:  do(session.stop(now)), then read until session.state is STOPPED

    do(actions): Send -> write its bytes; Frames -> bus.feed(each, now);
                 Monitoring -> frames follow; SessionFailed -> raise its error.

``now`` is any monotonic clock in seconds; :attr:`Elm327Session.deadline` is
``math.inf`` when no answer is awaited (monitoring a quiet bus is not a timeout).

**Set-up** (facts from [E] ELM327 datasheet ELM327DSJ and [K] Linux ``can327.c``).
One command at a time; each waits for its ``>`` prompt, ``command_timeout`` seconds
(``reset_timeout`` for the reset), else :class:`~o2x.errors.AdapterTimeout` naming
the command. The lines between a command and its prompt are its answer; a line
equal to the command is its echo and is skipped (echo is on until ``ATE0``, and some
clones never stop echoing). ``?`` means "not understood" ([E] p. 9).

======== ================================================ ===========================
command  why                                              answered ``?`` (or not OK)
======== ================================================ ===========================
ATZ      reset to the defaults; prints the banner         see below
ATE0     echo off: fewer bytes                            tolerated (echo is skipped)
ATL0     no LF after CR                                   tolerated (LF is handled)
ATS0     no spaces: 20 bytes an 8-byte frame, not 27      tolerated (spaces handled)
ATH1     headers on: the CAN ID of every frame            fails: no IDs, no signals
ATD0     no DLC digit (it cannot be parsed without        tolerated (before v1.3
         spaces; see :mod:`o2x.obd.monitor`)              there is no DLC to show)
ATSP6    ISO 15765-4 CAN, 11-bit, 500 kbit/s: the car's   fails: it cannot read a
                                                          CAN bus
ATCAF0   raw frames: with CAF1 the bytes are read as      fails: the data would be
         ISO-TP ([E]: "<DATA ERROR" beside them)          wrong
ATCFhhh  the filter (:mod:`o2x.obd.filters`): less to     tolerated: no filter, the
         send, fewer BUFFER FULLs ([E] p. 87)             mask is then not sent
ATCMhhh  its mask                                         fails if ATCF was taken:
                                                          the filter would be wrong
ATMA     monitor all: frames until stopped ([E] p. 21)    fails: it cannot monitor
======== ================================================ ===========================

A command that must succeed fails the session on a ``?`` with
:class:`~o2x.errors.AdapterUnsupported`, and on any other answer but ``OK`` (or
nothing) with :class:`~o2x.errors.AdapterError`, quoting it; an optional one
tolerates any answer (counted in ``stats.tolerated``).

The reset is special. Its answer should hold the banner (``ELM327 v1.5``, kept in
:attr:`Elm327Session.banner`). Without one, ``ATZ`` is sent once more: the first may
have met an adapter still monitoring from an earlier session ([E] p. 21: the
character that stops ``MA`` is discarded, so the rest of ``ATZ`` arrives as a garbled
command), or junk in its input. After that second ``ATZ``, an answer without the
banner that holds a ``?`` (the answer to the garbled rest of the first) is waited
past; any other is taken as the reset of a clone that prints no banner.

**Monitoring.** Bytes go to a :class:`~o2x.obd.monitor.MonitorParser`; its frames are
returned as :class:`~o2x.obd.actions.Frames`. The adapter ends monitoring by itself
when its 512-byte transmit buffer overflows (``BUFFER FULL``, [E] p. 87, [K]), when a
character reaches it (``STOPPED``), or on some errors; it then prints its prompt. Each
time, the session sends ``ATMA`` again **after** that prompt (no busy loop: one
restart per prompt), counts it, and returns :class:`~o2x.obd.actions.Monitoring`.
Five restarts in a row without a single frame between them fail the session
(:class:`~o2x.errors.AdapterError`, with the adapter's last message): an adapter
that ends every ``ATMA`` at once would otherwise be restarted for ever. A ``?`` to
``ATMA`` fails it at once (:class:`~o2x.errors.AdapterUnsupported`).

**Stopping.** [E] p. 21: "send any single character ... then wait for ... ('>')";
that character is discarded. The session sends a space: should it reach an adapter
that has just left monitoring by itself, [E] p. 9 says spaces are ignored in
commands, where [K]'s ``y`` would be left in the next command.

**The prompt** is ``>``, or that byte with bits 0xC0 set: [K] masks them ("Bits 0xc0
are sometimes set (randomly) ... Probably bad hardware"). NUL bytes are dropped.
That mask has a price: a garbled byte 0xBE or 0xFE inside a monitor line reads as a
prompt too. [E] (pp. 43-44) has monitoring end only with a message (``BUFFER FULL``,
``STOPPED``, an error), so a prompt while monitoring that no message announced is not
believed at once: the session waits :data:`PROMPT_GRACE` seconds (``RESTARTING``), and
frames in that time show the adapter still monitoring (counted in
``stats.stray_prompts``); none, and ``ATMA`` is sent again as after any prompt.
Sending ``ATMA`` at once would stop an adapter still monitoring, and the rest of the
command would be answered ``?``.

States (:class:`~o2x.obd.actions.SessionState`), as a table of what moves them::

    IDLE          --start-->                             INITIALISING (ATZ sent)
    INITIALISING  --prompt, answer accepted-->           INITIALISING (next command)
    INITIALISING  --prompt after ATCM (or ATCAF0)-->     MONITORING (ATMA sent)
    INITIALISING  --answer refused / no prompt in time--> FAILED
    MONITORING    --BUFFER FULL or STOPPED, no prompt yet--> RESTARTING
    MONITORING, RESTARTING --prompt-->                   MONITORING (ATMA sent again)
    MONITORING    --prompt no message announced-->       RESTARTING (PROMPT_GRACE)
    RESTARTING    --frames, no prompt (a clone went on)-->  MONITORING
    RESTARTING    --PROMPT_GRACE over, no frames-->      MONITORING (ATMA sent again)
    MONITORING, RESTARTING --'?' / 5 barren restarts / no prompt in time--> FAILED
    MONITORING, RESTARTING --stop-->                     STOPPING
    STOPPING      --prompt, or no prompt in time-->      STOPPED
    IDLE, INITIALISING --stop-->                         STOPPED (nothing to stop)

>>> session = Elm327Session()
>>> session.start(now=0.0)
[Send(data=b'ATZ\\r')]
>>> session.received(b"ATZ\\r\\r\\rELM327 v1.5\\r\\r>", now=0.8)
[Send(data=b'ATE0\\r')]
>>> session.banner
'ELM327 v1.5'
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from ..errors import AdapterError, AdapterTimeout, AdapterUnsupported
from ._text import ELM_CLEAN, ELM_DELETE
from .actions import Action, Frames, Monitoring, Send, SessionFailed, SessionState
from .filters import CanFilter, ami_filter
from .monitor import MonitorParser

__all__ = ["Elm327Session", "Elm327Stats"]

#: Restarts of ``ATMA`` in a row, without a frame between them, that fail the session.
MAX_BARREN_RESTARTS: Final = 5
#: Seconds a prompt no message announced waits for frames before it is believed
#: (module docstring): a car's bus carries tens of frames in that time.
PROMPT_GRACE: Final = 0.5
#: The character sent to stop monitoring (see the module docstring).
STOP_CHARACTER: Final = b" "
#: Bounds on what is kept of an answer during the set-up (a hostile or broken
#: adapter cannot make the session hold more).
_MAX_ANSWER_LINES: Final = 8
_MAX_ANSWER_LINE: Final = 64

_RESET: Final = "ATZ"
_MONITORING: Final = SessionState.MONITORING
_MONITOR: Final = "ATMA"


@attrs.frozen
class _Step:
    command: str
    #: None: any answer is tolerated. Else why the session fails on a '?' or on any
    #: answer but 'OK'.
    needed_for: str | None


def _setup(can_filter: CanFilter) -> list[_Step]:
    steps = [
        _Step("ATE0", None),
        _Step("ATL0", None),
        _Step("ATS0", None),
        _Step("ATH1", "it cannot show the CAN ID of a frame"),
        _Step("ATD0", None),
        _Step("ATSP6", "it cannot read a CAN bus (ISO 15765-4, 11-bit, 500 kbit/s)"),
        _Step("ATCAF0", "it cannot show raw CAN frames (CAN auto-formatting stays on)"),
    ]
    if not can_filter.passes_all:
        set_filter, set_mask = can_filter.commands()
        steps.append(_Step(set_filter, None))
        steps.append(_Step(set_mask, "it took the filter but not its mask"))
    return steps


@attrs.frozen
class Elm327Stats:
    """What an :class:`Elm327Session` has done."""

    #: Commands sent (``ATMA`` restarts included).
    commands: int = 0
    #: Frames handed over in :class:`~o2x.obd.actions.Frames`.
    frames: int = 0
    #: ``ATMA`` sent again after the adapter left monitoring by itself.
    restarts: int = 0
    #: Of those, after ``BUFFER FULL``.
    buffer_fulls: int = 0
    #: Of those, after ``STOPPED`` the session did not ask for.
    stops: int = 0
    #: Of those, after an error message (``CAN ERROR``, ``BUS ERROR``...).
    bus_errors: int = 0
    #: Optional commands answered ``?`` (or not ``OK``) and gone past (module docstring).
    tolerated: int = 0
    #: Times stop() gave up waiting for the prompt.
    stop_timeouts: int = 0
    #: Prompts while monitoring that frames after them showed to be noise (a garbled
    #: byte with the prompt's low 6 bits).
    stray_prompts: int = 0


class Elm327Session:
    """An ELM327-compatible adapter, from reset to monitoring the car's CAN bus.

    ``can_filter``: the filter the adapter applies; by default the tightest one for
    the messages of ``ami.dbc`` (:func:`o2x.obd.filters.ami_filter`);
    :meth:`CanFilter.pass_all() <o2x.obd.filters.CanFilter.pass_all>` sends none.
    See the module docstring for the exchange and the states.
    """

    def __init__(
        self,
        *,
        can_filter: CanFilter | None = None,
        command_timeout: float = 2.0,
        reset_timeout: float = 5.0,
    ) -> None:
        self.can_filter = ami_filter() if can_filter is None else can_filter
        self.command_timeout = command_timeout
        self.reset_timeout = reset_timeout
        self.state = SessionState.IDLE
        #: When the adapter's prompt is due (``now`` seconds); ``math.inf`` if none is.
        self.deadline = math.inf
        #: The reset's banner (``"ELM327 v1.5"``), once seen; None if none was printed.
        self.banner: str | None = None
        #: Whether the adapter took the filter (False: it shows every ID).
        self.filter_active = False
        self.parser = MonitorParser()
        self._steps = _setup(self.can_filter)
        self._step = -1  # index in _steps; -1: the reset
        self._command = ""
        self._resets = 0  # ATZ sent
        self._answer: list[str] = []  # lines of the answer so far, echo excluded
        self._partial = ""  # the answer's line in progress
        self._barren = 0  # restarts in a row without a frame
        # Counts when monitoring last (re)started: frames since = _frames - _frames_at_start.
        self._frames_at_start = 0
        self._extended_at_start = 0  # the parser's count of 29-bit frames then
        self._commands = self._frames = self._restarts = self._buffer_fulls = 0
        self._stops = self._bus_errors = self._tolerated = self._stop_timeouts = 0
        self._stray_prompts = 0
        # In RESTARTING: the prompt came unannounced, and is believed when the deadline
        # passes with no frame (module docstring).
        self._unannounced = False

    @property
    def stats(self) -> Elm327Stats:
        """The counters, as one frozen value."""
        return Elm327Stats(
            commands=self._commands,
            frames=self._frames,
            restarts=self._restarts,
            buffer_fulls=self._buffer_fulls,
            stops=self._stops,
            bus_errors=self._bus_errors,
            tolerated=self._tolerated,
            stop_timeouts=self._stop_timeouts,
            stray_prompts=self._stray_prompts,
        )

    # --- the driver's calls -----------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin the set-up: reset the adapter."""
        if self.state is not SessionState.IDLE:
            raise RuntimeError(f"start() is for an idle session; this one is {self.state.value}")
        self.state = SessionState.INITIALISING
        return [self._reset(now)]

    def received(self, data: bytes, now: float) -> list[Action]:
        """Bytes from the adapter, split anywhere."""
        state = self.state
        if state is _MONITORING:
            # The hot path (benchmarks/bench_obd.py): frames and nothing else.
            parser = self.parser
            frames = parser.feed(data)
            if not (parser.prompt or parser.buffer_full or parser.stopped):
                if frames:
                    self._frames += len(frames)
                    return [Frames(frames)]
                return []
            return self._monitor_received(frames, now)
        if state is SessionState.INITIALISING:
            return self._setup_received(data, now)
        if state in (SessionState.RESTARTING, SessionState.STOPPING):
            return self._monitor_received(self.parser.feed(data), now)
        return []  # IDLE, STOPPED, FAILED: nothing is expected

    def tick(self, now: float) -> list[Action]:
        """Call when ``now >= deadline``: the prompt awaited did not come in time."""
        if now < self.deadline:
            return []
        self.deadline = math.inf
        if self.state is SessionState.STOPPING:
            self._stop_timeouts += 1
            self.state = SessionState.STOPPED
            return []
        if self.state is SessionState.INITIALISING:
            timeout = self.reset_timeout if self._command == _RESET else self.command_timeout
            return self._fail(
                AdapterTimeout(
                    f"the OBD adapter gave no prompt within {timeout:g} s of {self._command}; "
                    "is it an ELM327-compatible adapter, and awake?"
                )
            )
        if self.state is SessionState.RESTARTING and self._unannounced:
            self._unannounced = False  # no frame since: the adapter did stop
            return self._monitor_ended(now)
        if self.state is SessionState.RESTARTING:
            return self._fail(
                AdapterTimeout(
                    f"the OBD adapter stopped monitoring (it said {self._why_ended()}) and "
                    f"gave no prompt within {self.command_timeout:g} s"
                )
            )
        return []

    def stop(self, now: float) -> list[Action]:
        """Leave monitoring: send one character and wait for the prompt (then STOPPED)."""
        state = self.state
        if state in (SessionState.IDLE, SessionState.INITIALISING):
            # Nothing runs on the adapter between commands: nothing to stop.
            self.state = SessionState.STOPPED
            self.deadline = math.inf
            return []
        if state is SessionState.RESTARTING and self._unannounced:
            # Monitoring or not (the prompt may have been noise): a space stops it if
            # it is, and is ignored at a prompt ([E] p. 9), where stop times out.
            self._unannounced = False
            self.state = SessionState.STOPPING
            self.deadline = now + self.command_timeout
            return [Send(STOP_CHARACTER)]
        if state is SessionState.RESTARTING:
            # It has left monitoring already; its prompt is on the way.
            self.state = SessionState.STOPPING
            return []
        if state is not SessionState.MONITORING:
            return []
        self.state = SessionState.STOPPING
        self.deadline = now + self.command_timeout
        return [Send(STOP_CHARACTER)]

    # --- the set-up -------------------------------------------------------------

    def _setup_received(self, data: bytes, now: float) -> list[Action]:
        text = data.translate(ELM_CLEAN, ELM_DELETE).decode("latin-1")
        prompt = text.find(">")
        if prompt >= 0:
            # Anything after the prompt in the same notification cannot answer the
            # next command, which is sent only now: it is dropped.
            text = text[:prompt]
        *lines, partial = (self._partial + text).split("\r")
        for line in lines:
            self._answer_line(line)
        self._partial = partial[:_MAX_ANSWER_LINE]
        if prompt < 0:
            return []
        if self._partial:
            self._answer_line(self._partial)
            self._partial = ""
        answer, self._answer = self._answer, []
        return self._answered(answer, now)

    def _answer_line(self, line: str) -> None:
        line = line.strip()[:_MAX_ANSWER_LINE]
        if not line or line.replace(" ", "").upper() == self._command:
            return  # an empty line, or the echo
        if self._command == _RESET and "ELM327" in line.upper() and self.banner is None:
            self.banner = line
        if len(self._answer) < _MAX_ANSWER_LINES:
            self._answer.append(line)

    def _answered(self, answer: list[str], now: float) -> list[Action]:
        """The prompt after ``self._command`` came, with ``answer`` before it."""
        if self._command == _RESET:
            if self.banner is None:
                if self._resets == 1:
                    return [self._reset(now)]  # the first may have been garbled
                if "?" in answer:
                    return []  # the answer to the garbled rest of the first: wait on
            return self._next(now)
        step = self._steps[self._step]
        if any(line != "OK" for line in answer):
            if step.needed_for is None:
                self._tolerated += 1
                if step.command.startswith("ATCF"):
                    self._step += 1  # no filter: its mask alone would make one
                return self._next(now)
            return self._refused(step, answer)
        if step.command.startswith("ATCM"):
            self.filter_active = True
        return self._next(now)

    def _refused(self, step: _Step, answer: list[str]) -> list[Action]:
        said = " / ".join(answer)
        if "?" in answer:
            return self._fail(
                AdapterUnsupported(
                    f"the OBD adapter answered '?' to {step.command}: {step.needed_for}, "
                    "so it cannot read the car"
                )
            )
        return self._fail(
            AdapterError(
                f"the OBD adapter answered {said!r} to {step.command} instead of 'OK': "
                f"{step.needed_for}"
            )
        )

    def _next(self, now: float) -> list[Action]:
        self._step += 1
        if self._step < len(self._steps):
            return [self._send(self._steps[self._step].command, now, self.command_timeout)]
        return self._monitor(now)

    def _reset(self, now: float) -> Send:
        self._resets += 1
        self._step = -1
        return self._send(_RESET, now, self.reset_timeout)

    def _send(self, command: str, now: float, timeout: float) -> Send:
        self._command = command
        self._commands += 1
        self.deadline = now + timeout
        return Send(command.encode("ascii") + b"\r")

    # --- monitoring -------------------------------------------------------------

    def _monitor(self, now: float) -> list[Action]:
        """Send ATMA: monitoring starts (the first time or again)."""
        send = self._send(_MONITOR, now, math.inf)
        self.deadline = math.inf  # a quiet bus is no timeout
        self.state = SessionState.MONITORING
        self.parser.clear_conditions()
        self._frames_at_start = self._frames
        self._extended_at_start = self.parser.stats.extended
        return [send, Monitoring()]

    def _monitor_received(self, frames: list[tuple[int, bytes]], now: float) -> list[Action]:
        """The parser read ``frames``; it may also have seen the monitor end."""
        parser = self.parser
        actions: list[Action] = []
        if frames:
            self._frames += len(frames)
            actions.append(Frames(frames))
        if parser.prompt:
            if self.state is _MONITORING and not self._announced():
                # Believed only if no frame follows it (module docstring).
                self.state = SessionState.RESTARTING
                self._unannounced = True
                self.deadline = now + PROMPT_GRACE
                parser.clear_conditions()  # the prompt is all there was
                return actions
            self._unannounced = False
            actions += self._monitor_ended(now)
        elif self.state is SessionState.MONITORING:
            if parser.buffer_full or parser.stopped:
                # It has left monitoring; its prompt follows.
                self.state = SessionState.RESTARTING
                self.deadline = now + self.command_timeout
        elif self.state is SessionState.RESTARTING and frames:
            # Frames in a later notification than the BUFFER FULL or STOPPED, and no
            # prompt: this adapter kept monitoring (not what [E] describes, but what
            # a clone may do). Waiting for a prompt would only time out.
            self.state = SessionState.MONITORING
            self.deadline = math.inf
            parser.clear_conditions()
            if self._unannounced:
                self._unannounced = False
                self._stray_prompts += 1
        return actions

    def _announced(self) -> bool:
        """Whether the parser saw a message that ends monitoring, or a ``?``."""
        parser = self.parser
        return (
            parser.buffer_full
            or parser.stopped
            or parser.unknown_command
            or parser.error is not None
        )

    def _monitor_ended(self, now: float) -> list[Action]:
        """The prompt came while monitoring: stopped on request, or restart."""
        parser = self.parser
        if self.state is SessionState.STOPPING:
            self.state = SessionState.STOPPED
            self.deadline = math.inf
            return []
        barren = self._frames == self._frames_at_start
        if parser.unknown_command and barren:
            return self._fail(
                AdapterUnsupported(
                    "the OBD adapter answered '?' to ATMA: it cannot monitor the CAN bus"
                )
            )
        if not barren or parser.stats.extended > self._extended_at_start:
            self._barren = 0
        else:
            self._barren += 1
            if self._barren >= MAX_BARREN_RESTARTS:
                return self._fail(
                    AdapterError(
                        f"the OBD adapter stopped monitoring {self._barren} times in a row "
                        f"without showing a frame (last it said {self._why_ended()}); is it "
                        "plugged in, and the car switched on?"
                    )
                )
        self._restarts += 1
        if parser.buffer_full:
            self._buffer_fulls += 1
        elif parser.stopped:
            self._stops += 1
        elif parser.error is not None:
            self._bus_errors += 1
        return self._monitor(now)

    def _why_ended(self) -> str:
        parser = self.parser
        if parser.buffer_full:
            return "'BUFFER FULL'"
        if parser.stopped:
            return "'STOPPED'"
        if parser.error is not None:
            return repr(parser.error)
        return "nothing"

    def _fail(self, error: AdapterError) -> list[Action]:
        self.state = SessionState.FAILED
        self.deadline = math.inf
        return [SessionFailed(error)]
