"""Elm327Session against scripted adapters written by hand from the ELM327 datasheet."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.errors import AdapterError, AdapterTimeout, AdapterUnsupported
from o2x.obd import (
    Action,
    CanFilter,
    Elm327Session,
    Frames,
    Monitoring,
    Send,
    SessionFailed,
    SessionState,
)
from o2x.obd.elm327 import MAX_BARREN_RESTARTS, PROMPT_GRACE

BATTERY = (0x580, bytes([0x10, 0x00, 0x8C, 0x14, 0x00, 0x55, 0x00, 0x00]))  # 1.6 A, 52.6 V, 85 %
PARK_BRAKE = (0x714, b"\x01\x00")  # ParkBrake 1
OBD_REQUEST = (0x7DF, bytes([0x02, 0x01, 0x0D, 0, 0, 0, 0, 0]))  # not the AMI's: filtered

SETUP = [
    b"ATZ\r",
    b"ATE0\r",
    b"ATL0\r",
    b"ATS0\r",
    b"ATH1\r",
    b"ATD0\r",
    b"ATSP6\r",
    b"ATCAF0\r",
    b"ATCF500\r",
    b"ATCM568\r",
    b"ATMA\r",
]


class ScriptedElm327:
    """An ELM327 as the datasheet [E] describes it, byte for byte.

    Commands end with CR; spaces and control characters in them are ignored (p. 9);
    with echo on (the default after a reset) each command is sent back first;
    answers end with CR (CR LF with L1) and an empty line, then the prompt '>'; AT Z
    prints the banner (p. 14); '?' answers what it does not understand. In AT MA
    (p. 21) it prints the frames that pass its filter (CF/CM) until any character
    arrives, which it discards, printing STOPPED and a prompt.

    The clone quirks: `keeps_echo` (E0 answered OK, echo stays), `ignores_s0` (S0 answered
    OK, spaces stay), `unknown` (answered '?'), `silent` (never answered), `banner` (None:
    a clone that prints none), `prompt` (the prompt byte, e.g. with its high bit set).
    """

    def __init__(
        self,
        *,
        banner: bytes | None = b"ELM327 v1.5",
        unknown: frozenset[str] = frozenset(),
        silent: frozenset[str] = frozenset(),
        keeps_echo: bool = False,
        ignores_s0: bool = False,
        linefeeds: bool = False,
        monitoring: bool = False,
        prompt: bytes = b">",
    ) -> None:
        self.banner = banner
        self.unknown = unknown
        self.silent = silent
        self.keeps_echo = keeps_echo
        self.ignores_s0 = ignores_s0
        self.prompt = prompt
        self.commands: list[str] = []  # every command line it executed
        self.resets = 0
        self._line = b""
        self._defaults()
        self.linefeeds = linefeeds
        self.monitoring = monitoring

    def _defaults(self) -> None:
        self.echo = True
        self.spaces = True
        self.headers = False
        self.dlc = False
        self.linefeeds = False
        self.filter, self.mask = 0, 0
        self.monitoring = False

    @property
    def _end(self) -> bytes:
        return b"\r\n" if self.linefeeds else b"\r"

    def write(self, data: bytes) -> bytes:
        out = b""
        for byte in data:
            char = bytes([byte])
            if self.monitoring:
                self.monitoring = False  # the character is discarded
                out += b"STOPPED" + self._end + self._end + self.prompt
                continue
            if char == b"\r":
                out += self._command(self._line)
                self._line = b""
            elif byte > 0x20:  # spaces and control characters are ignored
                self._line += char
        return out

    def _answer(self, text: bytes) -> bytes:
        return text + self._end + self._end + self.prompt

    def _command(self, raw: bytes) -> bytes:
        command = raw.decode().upper()
        self.commands.append(command)
        out = raw + self._end if self.echo else b""
        if command in self.silent:
            return out
        if command in self.unknown or not command.startswith("AT"):
            return out + self._answer(b"?")
        body = command[2:]
        if body == "Z":
            self.resets += 1
            self._defaults()
            banner = self.banner if self.banner is not None else b"OK"
            return out + self._end + self._end + self._answer(banner)
        if body == "MA":
            self.monitoring = True
            return out
        if body in ("E0", "E1"):
            self.echo = body == "E1" or self.keeps_echo
        elif body in ("S0", "S1"):
            self.spaces = body == "S1" or self.ignores_s0
        elif body in ("L0", "L1"):
            self.linefeeds = body == "L1"
        elif body in ("H0", "H1"):
            self.headers = body == "H1"
        elif body in ("D0", "D1"):
            self.dlc = body == "D1"
        elif body.startswith("CF"):
            self.filter = int(body[2:], 16)
        elif body.startswith("CM"):
            self.mask = int(body[2:], 16)
        elif body not in ("SP6", "CAF0"):
            return out + self._answer(b"?")
        return out + self._answer(b"OK")

    def bus(self, frames: list[tuple[int, bytes]]) -> bytes:
        """What it prints for these frames on the bus: those its filter passes."""
        if not self.monitoring:
            return b""
        out = b""
        for can_id, data in frames:
            if can_id & self.mask != self.filter & self.mask:
                continue
            fields = [b"%03X" % can_id] if self.headers else []
            if self.dlc:
                fields.append(b"%d" % len(data))
            fields += [b"%02X" % byte for byte in data]
            out += (b" " if self.spaces else b"").join(fields) + self._end
        return out

    def leaves_monitoring(self, said: bytes) -> bytes:
        """It leaves monitoring by itself, saying `said` (e.g. b"CAN ERROR"), then prompts."""
        self.monitoring = False
        return said + self._end + self._end + self.prompt

    def overflow(self, cut: bytes = b"580 10 00 8C") -> bytes:
        """Its transmit buffer overflows: BUFFER FULL glued to the line it cuts ([K])."""
        self.monitoring = False
        return cut + b"BUFFER FULL" + self._end + self._end + self.prompt


class Harness:
    """A driver: carries out the actions, the adapter's answers arriving in notifications
    of `mtu` bytes after whatever is already on its way."""

    def __init__(self, session: Elm327Session, adapter: ScriptedElm327, mtu: int = 20) -> None:
        self.session = session
        self.adapter = adapter
        self.mtu = mtu
        self.sent: list[bytes] = []
        self.actions: list[Action] = []
        self.frames: list[tuple[int, bytes]] = []
        self._in_flight = b""

    def start(self, now: float = 0.0) -> None:
        self._do(self.session.start(now))
        self.deliver(b"", now)

    def deliver(self, data: bytes, now: float = 0.0) -> None:
        self._in_flight += data
        while self._in_flight:
            chunk, self._in_flight = self._in_flight[: self.mtu], self._in_flight[self.mtu :]
            self._do(self.session.received(chunk, now))

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            self.actions.append(action)
            if isinstance(action, Send):
                self.sent.append(action.data)
                self._in_flight += self.adapter.write(action.data)
            elif isinstance(action, Frames):
                self.frames += action.frames

    @property
    def failure(self) -> BaseException | None:
        failures = [a.error for a in self.actions if isinstance(a, SessionFailed)]
        assert len(failures) <= 1
        return failures[0] if failures else None


def monitoring(
    adapter: ScriptedElm327 | None = None, *, can_filter: CanFilter | None = None
) -> Harness:
    harness = Harness(Elm327Session(can_filter=can_filter), adapter or ScriptedElm327())
    harness.start()
    assert harness.session.state is SessionState.MONITORING, harness.failure
    return harness


# --- the set-up ------------------------------------------------------------------------


def test_the_set_up_of_a_genuine_elm327() -> None:
    harness = monitoring()
    assert harness.sent == SETUP
    assert harness.actions.count(Monitoring()) == 1
    assert harness.session.banner == "ELM327 v1.5"
    assert harness.session.filter_active
    assert (harness.adapter.filter, harness.adapter.mask) == (0x500, 0x568)
    assert harness.session.deadline == math.inf  # a quiet bus is no timeout
    assert harness.session.stats.tolerated == 0


def test_frames_come_out_and_the_filter_is_the_adapter_s() -> None:
    harness = monitoring()
    harness.deliver(harness.adapter.bus([BATTERY, OBD_REQUEST, PARK_BRAKE] * 3))
    assert harness.frames == [BATTERY, PARK_BRAKE] * 3
    assert harness.session.stats.frames == 6


def test_a_hand_written_exchange() -> None:
    # Written out byte for byte: echo on until ATE0 takes effect (its own echo still
    # comes back), then answers alone; frames without spaces after ATS0.
    session = Elm327Session()
    assert session.start(0.0) == [Send(b"ATZ\r")]
    assert session.received(b"ATZ\r\r\rELM327 v1.5\r\r>", 0.5) == [Send(b"ATE0\r")]
    assert session.received(b"ATE0\rOK\r\r>", 0.6) == [Send(b"ATL0\r")]
    for answer, command in [
        (b"OK\r\r>", b"ATS0\r"),
        (b"OK\r\r>", b"ATH1\r"),
        (b"OK\r\r>", b"ATD0\r"),
        (b"OK\r\r>", b"ATSP6\r"),
        (b"OK\r\r>", b"ATCAF0\r"),
        (b"OK\r\r>", b"ATCF500\r"),
        (b"OK\r\r>", b"ATCM568\r"),
    ]:
        assert session.received(answer, 0.7) == [Send(command)]
    assert session.received(b"OK\r\r>", 0.8) == [Send(b"ATMA\r"), Monitoring()]
    assert session.received(b"58010008C1400550000\r71", 0.9) == [Frames([BATTERY])]
    assert session.received(b"40100\r", 0.9) == [Frames([PARK_BRAKE])]


def test_a_clone_that_keeps_echoing_ignores_s0_and_sends_linefeeds() -> None:
    adapter = ScriptedElm327(keeps_echo=True, ignores_s0=True, linefeeds=True)
    harness = monitoring(adapter)
    assert harness.sent == SETUP
    assert adapter.echo  # the clone still echoes ...
    assert adapter.spaces  # ... and still prints spaces
    harness.deliver(adapter.bus([BATTERY, PARK_BRAKE]))
    assert harness.frames == [BATTERY, PARK_BRAKE]


def test_a_clone_with_no_banner() -> None:
    adapter = ScriptedElm327(banner=None)
    harness = monitoring(adapter)
    assert harness.session.banner is None
    assert adapter.resets == 2  # sent once more, in case the first met a running monitor
    assert harness.sent == [b"ATZ\r", *SETUP]


def test_an_adapter_still_monitoring_from_an_earlier_session() -> None:
    # ATZ's 'A' stops the monitor and is discarded ([E] p. 21); "TZ" is then a command
    # it does not know. The session sends ATZ once more and waits past that '?'.
    adapter = ScriptedElm327(monitoring=True)
    harness = monitoring(adapter)
    assert adapter.commands[:2] == ["TZ", "ATZ"]
    assert adapter.resets == 1
    assert harness.session.banner == "ELM327 v1.5"
    harness.deliver(adapter.bus([BATTERY]))
    assert harness.frames == [BATTERY]


@pytest.mark.parametrize("command", ["ATE0", "ATL0", "ATS0", "ATD0"])
def test_a_question_mark_to_an_optional_command_is_tolerated(command: str) -> None:
    harness = monitoring(ScriptedElm327(unknown=frozenset({command})))
    assert harness.session.stats.tolerated == 1
    harness.deliver(harness.adapter.bus([BATTERY]))
    assert harness.frames == [BATTERY]


def test_no_filter_if_the_adapter_does_not_know_atcf() -> None:
    adapter = ScriptedElm327(unknown=frozenset({"ATCF500"}))
    harness = monitoring(adapter)
    assert b"ATCM568\r" not in harness.sent  # the mask alone would filter wrongly
    assert not harness.session.filter_active
    harness.deliver(adapter.bus([BATTERY, OBD_REQUEST]))
    assert harness.frames == [BATTERY, OBD_REQUEST]  # AmiBus ignores what it does not know


def test_no_filter_asked_for() -> None:
    harness = monitoring(can_filter=CanFilter.pass_all())
    assert not any(data.startswith((b"ATCF", b"ATCM")) for data in harness.sent)
    assert not harness.session.filter_active


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("ATSP6", "it cannot read a CAN bus"),
        ("ATH1", "CAN ID"),
        ("ATCAF0", "raw CAN frames"),
        ("ATCM568", "mask"),
        ("ATMA", "cannot monitor"),
    ],
)
def test_a_question_mark_to_a_needed_command_fails(command: str, said: str) -> None:
    harness = Harness(Elm327Session(), ScriptedElm327(unknown=frozenset({command})))
    harness.start()
    error = harness.failure
    assert isinstance(error, AdapterUnsupported)
    assert command in str(error)
    assert said in str(error)
    assert "'?'" in str(error)
    assert harness.session.state is SessionState.FAILED
    assert harness.sent[-1] == command.encode() + b"\r"  # nothing sent after it
    assert harness.session.deadline == math.inf


def test_another_answer_to_a_needed_command_fails_with_adapter_error() -> None:
    session = Elm327Session()
    session.start(0.0)
    assert session.received(b"ELM327 v1.5\r\r>", 0.1) == [Send(b"ATE0\r")]
    sent = [session.received(b"OK\r\r>", 0.1) for _ in range(5)]  # ATL0 .. ATSP6 sent
    assert sent[-1] == [Send(b"ATSP6\r")]
    (failure,) = session.received(b"BUS INIT: ...ERROR\r\r>", 0.2)
    assert isinstance(failure, SessionFailed)
    assert type(failure.error) is AdapterError
    assert "'BUS INIT: ...ERROR'" in str(failure.error)
    assert "ATSP6" in str(failure.error)


@pytest.mark.parametrize(("command", "timeout"), [("ATZ", 5.0), ("ATSP6", 2.0), ("ATE0", 2.0)])
def test_no_prompt_in_time_fails_naming_the_command(command: str, timeout: float) -> None:
    harness = Harness(Elm327Session(), ScriptedElm327(silent=frozenset({command})))
    harness.start(now=100.0)
    session = harness.session
    assert session.state is SessionState.INITIALISING
    assert session.deadline == 100.0 + timeout
    assert session.tick(100.0 + timeout - 0.01) == []
    assert session.state is SessionState.INITIALISING
    (failure,) = session.tick(100.0 + timeout)
    assert isinstance(failure, SessionFailed)
    assert isinstance(failure.error, AdapterTimeout)
    assert isinstance(failure.error, TimeoutError)
    assert command in str(failure.error)
    assert f"{timeout:g} s" in str(failure.error)
    assert session.state is SessionState.FAILED
    assert session.tick(1e9) == []


def test_the_timeouts_are_the_session_s() -> None:
    harness = Harness(
        Elm327Session(command_timeout=0.5, reset_timeout=1.5),
        ScriptedElm327(silent=frozenset({"ATZ"})),
    )
    harness.start(now=0.0)
    assert harness.session.deadline == 1.5


# --- monitoring -----------------------------------------------------------------------


def test_buffer_full_restarts_after_the_prompt() -> None:
    harness = monitoring()
    adapter, session = harness.adapter, harness.session
    harness.deliver(adapter.bus([BATTERY, PARK_BRAKE]) + b"580 10 00 8CBUFFER FULL\r")
    adapter.monitoring = False
    assert session.state is SessionState.RESTARTING  # its prompt follows
    assert harness.sent[-1] == b"ATMA\r"
    assert session.deadline == 2.0
    harness.deliver(b"\r>")
    assert harness.sent[-2:] == [b"ATMA\r", b"ATMA\r"]
    assert session.state is SessionState.MONITORING
    assert harness.actions.count(Monitoring()) == 2
    assert (session.stats.restarts, session.stats.buffer_fulls) == (1, 1)
    assert harness.frames == [BATTERY, PARK_BRAKE]  # the cut one is dropped


def test_buffer_full_for_ever() -> None:
    harness = monitoring()
    adapter = harness.adapter
    adapter.monitoring = False
    for _ in range(200):
        adapter.monitoring = True
        harness.deliver(adapter.bus([BATTERY]) + adapter.overflow())
    assert harness.session.state is SessionState.MONITORING
    assert harness.session.stats.restarts == 200
    assert harness.frames == [BATTERY] * 200
    # One ATMA per prompt: no busy loop.
    assert harness.sent.count(b"ATMA\r") == 201


def test_a_clone_that_goes_on_monitoring_after_buffer_full() -> None:
    harness = monitoring()
    session = harness.session
    harness.deliver(b"BUFFER FULL\r", now=1.0)
    assert session.state is SessionState.RESTARTING
    harness.deliver(harness.adapter.bus([PARK_BRAKE]), now=1.5)  # no prompt: frames
    assert session.state is SessionState.MONITORING
    assert session.deadline == math.inf
    assert session.tick(10.0) == []
    assert harness.frames == [PARK_BRAKE]
    assert harness.sent.count(b"ATMA\r") == 1
    assert session.stats.restarts == 0


def test_a_stop_the_session_did_not_ask_for_restarts() -> None:
    harness = monitoring()
    adapter = harness.adapter
    harness.deliver(adapter.bus([PARK_BRAKE]) + adapter.leaves_monitoring(b"STOPPED"))
    assert harness.session.stats.stops == 1
    assert harness.session.state is SessionState.MONITORING
    assert harness.sent[-1] == b"ATMA\r"


def test_restarts_without_frames_fail_after_a_few() -> None:
    harness = monitoring()
    adapter = harness.adapter
    for _ in range(MAX_BARREN_RESTARTS - 1):
        harness.deliver(adapter.leaves_monitoring(b"CAN ERROR"))
    assert harness.session.state is SessionState.MONITORING
    assert harness.session.stats.bus_errors == MAX_BARREN_RESTARTS - 1
    harness.deliver(adapter.leaves_monitoring(b"CAN ERROR"))
    error = harness.failure
    assert type(error) is AdapterError
    assert "CAN ERROR" in str(error)
    assert harness.session.state is SessionState.FAILED


def test_a_frame_between_restarts_resets_the_count() -> None:
    harness = monitoring()
    adapter = harness.adapter
    for _ in range(3 * MAX_BARREN_RESTARTS):
        for _ in range(MAX_BARREN_RESTARTS - 1):
            harness.deliver(adapter.leaves_monitoring(b"CAN ERROR"))
        harness.deliver(adapter.bus([PARK_BRAKE]))
    assert harness.session.state is SessionState.MONITORING
    assert harness.session.stats.restarts == 3 * MAX_BARREN_RESTARTS * (MAX_BARREN_RESTARTS - 1)
    assert harness.frames == [PARK_BRAKE] * 3 * MAX_BARREN_RESTARTS


def test_no_prompt_after_buffer_full_times_out() -> None:
    harness = monitoring()
    harness.deliver(b"BUFFER FULL\r", now=10.0)
    assert harness.session.tick(11.99) == []
    (failure,) = harness.session.tick(12.0)
    assert isinstance(failure, SessionFailed)
    assert isinstance(failure.error, AdapterTimeout)
    assert "BUFFER FULL" in str(failure.error)


@pytest.mark.parametrize("prompt", [b"\xbe", b"\xfe"])
def test_a_prompt_with_its_high_bits_set(prompt: bytes) -> None:
    # [K]: "Bits 0xc0 are sometimes set (randomly)" on the prompt.
    adapter = ScriptedElm327(prompt=prompt)
    harness = monitoring(adapter)
    harness.deliver(adapter.overflow())
    assert harness.session.stats.restarts == 1


@pytest.mark.parametrize("junk", [b">", b"\xbe", b"\xfe"])
def test_a_prompt_like_byte_inside_a_monitor_line_is_noise_once_frames_follow(
    junk: bytes,
) -> None:
    # A garbled byte with the prompt's low 6 bits inside a line: the adapter is still
    # monitoring, and no message said otherwise. ATMA now would stop it.
    harness = monitoring()
    session = harness.session
    harness.deliver(b"580 10 00" + junk + b" 8C 14 00 55 00 00\r", now=3.0)
    assert session.state is SessionState.RESTARTING
    assert session.deadline == 3.0 + PROMPT_GRACE
    assert harness.sent.count(b"ATMA\r") == 1  # not sent again yet
    harness.deliver(harness.adapter.bus([PARK_BRAKE]), now=3.1)
    assert session.state is SessionState.MONITORING
    assert session.deadline == math.inf
    assert session.tick(10.0) == []
    assert harness.frames == [PARK_BRAKE]  # the garbled line is no frame
    assert (session.stats.stray_prompts, session.stats.restarts) == (1, 0)
    assert harness.sent.count(b"ATMA\r") == 1


def test_an_unannounced_prompt_is_believed_when_no_frame_follows() -> None:
    harness = monitoring()
    session = harness.session
    frames = harness.adapter.bus([BATTERY])
    harness.adapter.monitoring = False  # it stopped, and said nothing
    harness.deliver(frames + b"\r>", now=5.0)
    assert session.state is SessionState.RESTARTING
    assert session.tick(5.0 + PROMPT_GRACE / 2) == []
    harness._do(session.tick(5.0 + PROMPT_GRACE))
    assert session.state is SessionState.MONITORING
    assert harness.sent.count(b"ATMA\r") == 2
    assert (session.stats.restarts, session.stats.stray_prompts) == (1, 0)
    assert session.deadline == math.inf


def test_an_announced_prompt_restarts_at_once() -> None:
    # The control of the two above: BUFFER FULL before the prompt needs no grace.
    harness = monitoring()
    adapter = harness.adapter
    harness.deliver(adapter.bus([BATTERY]) + adapter.leaves_monitoring(b"BUFFER FULL"), now=5.0)
    assert harness.session.state is SessionState.MONITORING
    assert harness.sent.count(b"ATMA\r") == 2


def test_stop_while_an_unannounced_prompt_waits_sends_the_stop_character() -> None:
    harness = monitoring()
    session = harness.session
    harness.deliver(b"\r>", now=1.0)
    assert session.stop(1.2) == [Send(b" ")]  # stops it, if it is monitoring still
    assert session.state is SessionState.STOPPING
    assert session.deadline == 1.2 + 2.0
    harness.deliver(harness.adapter.write(b" "))
    assert session.state is SessionState.STOPPED


def test_nul_bytes_anywhere() -> None:
    class NulElm327(ScriptedElm327):
        def write(self, data: bytes) -> bytes:
            return b"\x00".join(bytes([b]) for b in super().write(data))

    harness = monitoring(NulElm327())
    harness.deliver(b"\x00".join(bytes([b]) for b in harness.adapter.bus([BATTERY])))
    assert harness.frames == [BATTERY]


@given(st.integers(1, 64))
@settings(max_examples=30, deadline=None)
def test_any_notification_size(mtu: int) -> None:
    adapter = ScriptedElm327(keeps_echo=True, linefeeds=True)
    harness = Harness(Elm327Session(), adapter, mtu=mtu)
    harness.start()
    harness.deliver(adapter.bus([BATTERY, OBD_REQUEST, PARK_BRAKE] * 2) + adapter.overflow())
    harness.deliver(adapter.bus([PARK_BRAKE]))
    assert harness.sent == [*SETUP, b"ATMA\r"]
    assert harness.frames == [BATTERY, PARK_BRAKE, BATTERY, PARK_BRAKE, PARK_BRAKE]


# --- stopping -------------------------------------------------------------------------


def test_stop_sends_one_character_and_waits_for_the_prompt() -> None:
    harness = monitoring()
    session = harness.session
    actions = session.stop(50.0)
    assert actions == [Send(b" ")]
    assert session.state is SessionState.STOPPING
    assert session.deadline == 52.0
    # The line in progress is finished first ([E] p. 21), then STOPPED and the prompt.
    harness.deliver(harness.adapter.bus([PARK_BRAKE]))
    assert harness.frames == [PARK_BRAKE]
    assert session.state is SessionState.STOPPING
    harness.deliver(harness.adapter.write(b" "))
    assert session.state is SessionState.STOPPED
    assert session.deadline == math.inf
    assert session.received(harness.adapter.bus([BATTERY]) + b"\r>", 51.0) == []
    assert session.stats.restarts == 0


def test_stop_gives_up_after_the_timeout() -> None:
    harness = monitoring()
    harness.session.stop(50.0)
    assert harness.session.tick(51.0) == []
    assert harness.session.tick(52.0) == []
    assert harness.session.state is SessionState.STOPPED
    assert harness.session.stats.stop_timeouts == 1


def test_stop_while_restarting_waits_for_the_prompt_on_its_way() -> None:
    harness = monitoring()
    harness.deliver(b"BUFFER FULL\r")
    harness.adapter.monitoring = False
    assert harness.session.stop(1.0) == []  # it has left monitoring already
    harness.deliver(b"\r>")
    assert harness.session.state is SessionState.STOPPED
    assert harness.sent[-1] == b"ATMA\r"  # not sent again


def test_stop_before_monitoring() -> None:
    session = Elm327Session()
    assert session.stop(0.0) == []
    assert session.state is SessionState.STOPPED
    session = Elm327Session()
    session.start(0.0)
    assert session.stop(0.1) == []
    assert session.state is SessionState.STOPPED
    assert session.received(b"OK\r\r>", 0.2) == []
    assert session.deadline == math.inf


def test_start_twice_is_a_mistake() -> None:
    session = Elm327Session()
    session.start(0.0)
    with pytest.raises(RuntimeError, match="idle"):
        session.start(0.0)


@given(st.binary(max_size=200), st.binary(max_size=200))
@settings(max_examples=200)
def test_garbage_never_raises(during_setup: bytes, while_monitoring: bytes) -> None:
    session = Elm327Session()
    session.start(0.0)
    session.received(during_setup, 0.1)
    harness = monitoring()
    harness.session.received(while_monitoring, 0.1)
    harness.session.tick(1e9)
