"""SlcanParser and SlcanSession, against lines written by hand from WiCAN's slcan.c."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.errors import AdapterError, AdapterSpeaksOther, AdapterTimeout, AdapterUnsupported
from o2x.obd import Frames, Monitoring, Send, SessionFailed, SessionState
from o2x.obd.slcan import MAX_LINE, SlcanParser, SlcanSession

# [W] slcan_parse_frame: 't' (or 'T' for 29-bit), the ID in 3 (or 8) hex digits, the DLC
# digit, 2 upper-case hex digits per byte, the 4-digit timestamp if Z1, then CR.
# 0x580, 8 bytes: 1.6 A, 52.60 V, SoC 85 % (see test_monitor.py for the derivation).
BATTERY_LINE = b"t580810008C1400550000\r"
BATTERY = (0x580, bytes([0x10, 0x00, 0x8C, 0x14, 0x00, 0x55, 0x00, 0x00]))
# 0x714, 2 bytes: ParkBrake 1.
PARK_BRAKE_LINE = b"t71420100\r"
PARK_BRAKE = (0x714, b"\x01\x00")


def test_an_8_byte_frame_is_22_bytes() -> None:
    assert len(BATTERY_LINE) == 22  # as the reference says of [W]
    assert SlcanParser().feed(BATTERY_LINE) == [BATTERY]


def test_frames_with_a_timestamp() -> None:
    # [W]: the timestamp is ms modulo 60000: 0xEA5F = 59999 at most.
    parser = SlcanParser()
    assert parser.feed(b"t580810008C1400550000EA5F\rt714201000000\r") == [BATTERY, PARK_BRAKE]
    assert parser.stats.timestamped == 2


def test_a_frame_with_no_data_and_lower_case() -> None:
    assert SlcanParser().feed(b"t7df0\rt71420100\r") == [(0x7DF, b""), PARK_BRAKE]


@pytest.mark.parametrize(
    ("line", "counter"),
    [
        (b"T18DAF1108" + b"11" * 8, "extended"),
        (b"T18DAF1102AABB1234", "extended"),  # with a timestamp
        (b"r7DF0", "remote"),
        (b"r7DF81234", "remote"),
        (b"R18DAF1100", "remote"),
    ],
)
def test_extended_and_remote_frames_are_counted_and_dropped(line: bytes, counter: str) -> None:
    parser = SlcanParser()
    assert parser.feed(line + b"\r" + PARK_BRAKE_LINE) == [PARK_BRAKE]
    assert getattr(parser.stats, counter) == 1
    assert parser.stats.lines_ignored == 0


@pytest.mark.parametrize(
    "line",
    [
        b"t5809" + b"00" * 9,  # DLC 9
        b"t58081000",  # DLC 8, 2 bytes
        b"t580210001",  # one digit too many
        b"t5802 1 00",  # spaces
        b"t5802100G",  # not hex
        b"t58G21000",
        b"t580A" + b"00" * 10,  # a CAN FD length code
        b"t580",
        b"z",  # a Lawicel transmit acknowledgement: o2x sends no frames
        b"Z",
        b"V2011",  # [W] version
        b"N43010123",  # [W] serial
        b"F00",  # [W] status
        b"T1FFFFFFF0Z",
        b"TFFFFFFFF0",  # above 29 bits
        b"\xff\xfd",
    ],
)
def test_bad_lines_are_no_frames(line: bytes) -> None:
    parser = SlcanParser()
    assert parser.feed(line + b"\r") == []
    assert parser.stats.frames == 0
    assert parser.acks == 0


def test_acks_and_bells_are_counted() -> None:
    parser = SlcanParser()
    assert parser.feed(b"\r" + BATTERY_LINE + b"\r\x07") == [BATTERY]
    assert (parser.acks, parser.bells) == (2, 1)
    parser.clear_conditions()
    assert (parser.acks, parser.bells) == (0, 0)
    assert (parser.stats.acks, parser.stats.bells) == (2, 1)


def test_a_bel_ends_the_line_it_interrupts() -> None:
    parser = SlcanParser()
    assert parser.feed(b"t5808100\x07" + PARK_BRAKE_LINE) == [PARK_BRAKE]
    assert parser.bells == 1


def test_nul_and_lf_are_dropped() -> None:
    # An LF kept would make an empty line, which reads as an acknowledgement.
    parser = SlcanParser()
    assert parser.feed(b"t71\x00420100\r\n") == [PARK_BRAKE]
    assert parser.acks == 0


def test_a_line_that_never_ends_keeps_at_most_one_line() -> None:
    parser = SlcanParser()
    for _ in range(50_000):
        parser.feed(b"t" * 20)
        assert parser.buffered <= MAX_LINE
    assert parser.stats.overlong == 1
    assert parser.feed(b"\r" + PARK_BRAKE_LINE) == [PARK_BRAKE]
    assert parser.feed(b"t" * 1_000_000 + b"\x07" + PARK_BRAKE_LINE) == [PARK_BRAKE]


@st.composite
def transcripts(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], int]:
    parts: list[bytes] = []
    frames: list[tuple[int, bytes]] = []
    acks = 0
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["frame", "frame", "ack", "bell", "other"]))
        if kind == "frame":
            can_id = draw(st.integers(0, 0x7FF))
            data = draw(st.binary(max_size=8))
            stamp = draw(st.sampled_from([b"", b"%04X" % draw(st.integers(0, 59_999))]))
            parts.append(b"t%03X%d%s%s\r" % (can_id, len(data), data.hex().upper().encode(), stamp))
            frames.append((can_id, data))
        elif kind == "ack":
            parts.append(b"\r")
            acks += 1
        elif kind == "bell":
            parts.append(b"\x07")
        else:
            parts.append(
                draw(st.sampled_from([b"z\r", b"Z\r", b"V2011\r", b"T18DAF1100\r", b"r7DF0\r"]))
            )
    return b"".join(parts), frames, acks


@given(transcripts(), st.lists(st.integers(0, 10_000), max_size=40))
@settings(max_examples=300)
def test_any_split_gives_the_same_frames(
    transcript: tuple[bytes, list[tuple[int, bytes]], int], cuts: list[int]
) -> None:
    stream, expected, acks = transcript
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    parser = SlcanParser()
    frames = [f for a, b in itertools.pairwise(points) for f in parser.feed(stream[a:b])]
    assert frames == expected
    # An ack right after a BEL is still an ack; one that follows a frame's CR too.
    assert parser.acks == acks


@given(st.lists(st.binary(max_size=64), max_size=50))
def test_garbage_never_raises(chunks: list[bytes]) -> None:
    parser = SlcanParser()
    for chunk in chunks:
        for can_id, data in parser.feed(chunk):
            assert 0 <= can_id <= 0x7FF
            assert len(data) <= 8
        assert parser.buffered <= MAX_LINE


@given(st.text(alphabet="tTrRzZ0123456789ABCDEF\r\x07", max_size=300), st.integers(1, 40))
@settings(max_examples=500)
def test_slcan_like_garbage_never_raises(text: str, size: int) -> None:
    stream = text.encode()
    parser = SlcanParser()
    for i in range(0, len(stream), size):
        for can_id, data in parser.feed(stream[i : i + size]):
            assert 0 <= can_id <= 0x7FF
            assert len(data) <= 8


# --- the session against a scripted WiCAN -------------------------------------------


class ScriptedSlcan:
    """A SLCAN adapter written from [W] slcan.c: every command it knows is answered by a
    lone CR; `refuse` answers BEL instead (Lawicel's error); `ignore` answers nothing (what
    [W] does with a command it does not know)."""

    def __init__(
        self, *, refuse: frozenset[str] = frozenset(), ignore: frozenset[str] = frozenset()
    ):
        self.refuse = refuse
        self.ignore = ignore
        self.received: list[bytes] = []
        self.open = False

    def write(self, data: bytes) -> bytes:
        self.received.append(data)
        command = data.rstrip(b"\r").decode()
        if command in self.ignore:
            return b""
        if command in self.refuse:
            return b"\x07"
        if command in ("O", "L"):
            self.open = True
        elif command == "C":
            self.open = False
        return b"\r"


def drive(session: SlcanSession, adapter: ScriptedSlcan, actions: list, now: float) -> list:
    """Carry out the actions as a driver would; every action seen, in order."""
    seen: list = []
    queue = list(actions)
    while queue:
        action = queue.pop(0)
        seen.append(action)
        if isinstance(action, Send):
            queue += session.received(adapter.write(action.data), now)
    return seen


def test_the_session_opens_the_channel_listen_only() -> None:
    adapter = ScriptedSlcan()
    session = SlcanSession()
    seen = drive(session, adapter, session.start(0.0), 0.0)
    assert adapter.received == [b"C\r", b"S6\r", b"L\r"]
    assert seen[-1] == Monitoring()
    assert session.state is SessionState.MONITORING
    assert session.deadline == math.inf
    assert session.received(BATTERY_LINE[:10], 1.0) == []
    assert session.received(BATTERY_LINE[10:] + PARK_BRAKE_LINE, 1.0) == [
        Frames([BATTERY, PARK_BRAKE])
    ]
    assert session.stats.frames == 2


def test_open_normally_when_asked() -> None:
    adapter = ScriptedSlcan()
    session = SlcanSession(listen_only=False)
    drive(session, adapter, session.start(0.0), 0.0)
    assert adapter.received == [b"C\r", b"S6\r", b"O\r"]


def test_a_refused_close_is_fine_and_no_listen_only_falls_back_to_open() -> None:
    adapter = ScriptedSlcan(refuse=frozenset({"C", "L"}))
    session = SlcanSession()
    drive(session, adapter, session.start(0.0), 0.0)
    assert adapter.received == [b"C\r", b"S6\r", b"L\r", b"O\r"]
    assert session.state is SessionState.MONITORING


def test_a_refused_bitrate_fails_clearly() -> None:
    session = SlcanSession()
    seen = drive(session, ScriptedSlcan(refuse=frozenset({"S6"})), session.start(0.0), 0.0)
    failure = seen[-1]
    assert isinstance(failure, SessionFailed)
    assert isinstance(failure.error, AdapterUnsupported)
    assert "S6" in str(failure.error)
    assert session.state is SessionState.FAILED
    assert session.received(PARK_BRAKE_LINE, 1.0) == []


def test_a_refused_open_fails() -> None:
    session = SlcanSession(listen_only=False)
    seen = drive(session, ScriptedSlcan(refuse=frozenset({"O"})), session.start(0.0), 0.0)
    assert isinstance(seen[-1], SessionFailed)
    assert type(seen[-1].error) is AdapterError


def test_no_answer_times_out_naming_the_command() -> None:
    session = SlcanSession(command_timeout=2.0)
    drive(session, ScriptedSlcan(ignore=frozenset({"S6"})), session.start(10.0), 10.0)
    assert session.deadline == 12.0
    assert session.tick(11.9) == []
    (failure,) = session.tick(12.0)
    assert isinstance(failure, SessionFailed)
    assert isinstance(failure.error, AdapterTimeout)
    assert "'S6'" in str(failure.error)


def test_frames_before_the_channel_is_ours_are_dropped() -> None:
    # A channel left open by an earlier session streams frames until C is answered.
    session = SlcanSession()
    session.start(0.0)
    assert session.received(PARK_BRAKE_LINE + b"\r", 0.1) == [Send(b"S6\r")]
    assert session.stats.dropped == 1


def test_frames_with_the_open_acknowledgement() -> None:
    session = SlcanSession()
    session.start(0.0)
    session.received(b"\r", 0.1)
    session.received(b"\r", 0.2)
    assert session.received(PARK_BRAKE_LINE + b"\r", 0.3) == [Monitoring(), Frames([PARK_BRAKE])]


def test_stop_closes_the_channel() -> None:
    adapter = ScriptedSlcan()
    session = SlcanSession()
    drive(session, adapter, session.start(0.0), 0.0)
    assert session.stop(5.0) == [Send(b"C\r")]
    assert session.state is SessionState.STOPPING
    assert session.received(PARK_BRAKE_LINE, 5.1) == [Frames([PARK_BRAKE])]  # still in flight
    assert session.received(b"\r", 5.1) == []
    assert session.state is SessionState.STOPPED


def test_stop_gives_up_after_the_timeout() -> None:
    session = SlcanSession()
    drive(session, ScriptedSlcan(), session.start(0.0), 0.0)
    session.stop(5.0)
    assert session.tick(6.9) == []
    assert session.state is SessionState.STOPPING
    assert session.tick(7.0) == []
    assert session.state is SessionState.STOPPED
    assert session.stats.stop_timeouts == 1


def test_stop_before_monitoring_sends_nothing() -> None:
    session = SlcanSession()
    assert session.stop(0.0) == []
    assert session.state is SessionState.STOPPED
    with pytest.raises(RuntimeError):
        session.start(0.0)


def test_an_elm327_prompt_says_the_adapter_speaks_elm327() -> None:
    session = SlcanSession()
    session.start(0.0)
    # An ELM327 answers the SLCAN close command "C" with "?", a blank line and its prompt.
    actions = session.received(b"?\r\r>", 0.1)
    assert len(actions) == 1
    assert isinstance(actions[0], SessionFailed)
    error = actions[0].error
    assert isinstance(error, AdapterSpeaksOther)
    assert error.protocol == "elm327"
    assert "elm327 protocol" in str(error)
    assert session.state is SessionState.FAILED
