"""MonitorParser: ELM327 ``AT MA`` output, written by hand from the datasheet, back to frames."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.can import dbc
from o2x.obd.monitor import MAX_LINE, MonitorParser

# Frames written by hand from ami.dbc (all little-endian), each with the values it holds.
# 0x580 BMS_Battery: PackCurrent 0x0010 x 0.1 = 1.6 A, PackVoltage 0x148C = 5260 x 0.01
# = 52.60 V, StateOfCharge 0x55 = 85 %.
BATTERY = (0x580, bytes([0x10, 0x00, 0x8C, 0x14, 0x00, 0x55, 0x00, 0x00]))
# 0x581 ECU_Odometer: Odometer bytes 4-6 = 0x00B772 = 46962 x 0.1 = 4696.2 km, Speed 0x2D = 45.
ODOMETER = (0x581, bytes([0x00, 0x00, 0x00, 0x00, 0x72, 0xB7, 0x00, 0x2D]))
# 0x593 BMS_AuxBattery: AuxVoltage 0x0548 = 1352 x 0.01 = 13.52 V.
AUX = (0x593, bytes([0x48, 0x05, 0, 0, 0, 0, 0, 0]))
# 0x712 VIN_1to3: "VR1" in ASCII, 3 bytes.
VIN_1TO3 = (0x712, b"VR1")
# 0x714 ParkBrakeStatus: ParkBrake 1, 2 bytes.
PARK_BRAKE = (0x714, bytes([0x01, 0x00]))


def test_the_hand_written_frames_hold_what_their_comments_say() -> None:
    messages = dbc.compiled()
    assert messages[0x580].decode(BATTERY[1]) == (1.6, 52.6, 85)
    assert messages[0x581].decode(ODOMETER[1]) == pytest.approx((4696.2, 45))
    assert messages[0x593].decode(AUX[1]) == (13.52,)
    assert messages[0x712].decode(VIN_1TO3[1]) == tuple(b"VR1")
    assert messages[0x714].decode(PARK_BRAKE[1]) == (1,)


# --- the line formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"580 10 00 8C 14 00 55 00 00",  # H1 S1 ([E]; the reference's example)
        b"58010008C1400550000",  # H1 S0: 3 + 16 digits
        b"580 8 10 00 8C 14 00 55 00 00",  # H1 S1 D1 ([K]: "123 D PL PL ...")
        b"580 10 00 8C 14 00 55 00 00 ",  # a trailing space
        b"580 1000 8C14 0055 0000",  # a clone's uneven spaces: still one byte per 2 digits
        b"580 10 00 8c 14 00 55 00 00",  # lower case
    ],
)
def test_an_11_bit_line_in_every_format_gives_the_frame(line: bytes) -> None:
    assert MonitorParser().feed(line + b"\r") == [BATTERY]


@pytest.mark.parametrize("end", [b"\r", b"\r\n", b"\n"])
def test_line_ends_cr_crlf_and_lf(end: bytes) -> None:
    stream = end.join([b"580 10 00 8C 14 00 55 00 00", b"714 01 00", b""])
    parser = MonitorParser()
    assert parser.feed(stream) == [BATTERY, PARK_BRAKE]
    assert parser.stats.lines_ignored == 0  # the empty lines of CR LF are not "ignored"


def test_short_frames_and_a_frame_without_data() -> None:
    parser = MonitorParser()
    assert parser.feed(b"712 56 52 31\r714 01 00\r7DF\r") == [VIN_1TO3, PARK_BRAKE, (0x7DF, b"")]


def test_the_reference_s0_example_is_one_digit_too_long_and_no_frame() -> None:
    # The reference's S0 example "580100008C1400550000" has 17 digits after the
    # header: an odd count, which no frame has. The parser must not guess.
    parser = MonitorParser()
    assert parser.feed(b"580100008C1400550000\r") == []
    assert parser.stats.lines_ignored == 1


@pytest.mark.parametrize(
    "line",
    [
        b"580 10 00 8C 14 00 55 00 00 11",  # 9 data bytes
        b"58010008C140055000011",  # 9 data bytes, no spaces
        b"580 10 00 8C 14 00 55 00 0",  # odd digit count
        b"580 10 00 8G",  # not hex
        b"580 8 10 00 8C",  # the DLC says 8, 3 bytes follow: cut short
        b"58 10 00",  # a header digit lost
        b"5801 00 8C",  # a digit moved: no byte boundary matches
        b"580 10 00 8CBUFFER FULL",  # cut short by BUFFER FULL ([K])
        b"580 10 \xb000",  # a byte with the high bit set
        b"+58 10",
        b"5_8 10",
    ],
)
def test_bad_frame_lines_are_no_frames(line: bytes) -> None:
    parser = MonitorParser()
    assert parser.feed(line + b"\r") == []
    assert parser.stats.frames == 0


@pytest.mark.parametrize(
    "line",
    [
        b"18 DA F1 10 03 41 0D 00",  # 29-bit, spaces
        b"18DAF110034100",  # 29-bit, no spaces
        b"18 DA F1 10 3 03 41 0D",  # 29-bit with the DLC ([K]: "12 34 56 78 D PL ...")
        b"18DAF110",  # 29-bit, no data
    ],
)
def test_29_bit_frames_are_counted_and_dropped(line: bytes) -> None:
    parser = MonitorParser()
    assert parser.feed(line + b"\r580 10 00 8C 14 00 55 00 00\r") == [BATTERY]
    assert parser.stats.extended == 1
    assert parser.stats.lines_ignored == 0


def test_remote_frames_are_counted_and_dropped() -> None:
    parser = MonitorParser()
    assert parser.feed(b"7DF RTR\r7DF 0 RTR\r7DFRTR\r714 01 00\r") == [PARK_BRAKE]
    assert parser.stats.remote == 3


# --- what is not a frame -----------------------------------------------------------


NOISE_LINES = [
    b"ATMA",  # the echo of the command
    b"AT MA",
    b"ATZ",
    b"OK",
    b"?",
    b"ELM327 v1.5",  # the banner
    b"ELM327 v2.1",
    b"SEARCHING...",
    b"STOPPED",
    b"BUFFER FULL",
    b"CAN ERROR",
    b"<RX ERROR",
    b"<DATA ERROR",
    b"7E8 03 41 0D <DATA ERROR",
    b"NO DATA",
    b"BUS ERROR",
    b"BUS BUSY",
    b"FB ERROR",
    b"ERR94",
    b"UNABLE TO CONNECT",
    b"LV RESET",
    b"ACT ALERT",
    b"580 10 00 8CBUFFER FULL",
    b"\xff\xfd garbage \x01\x7f",  # no prompt byte (0x3E with bits 0xC0) in it
]


@pytest.mark.parametrize("line", NOISE_LINES)
def test_noise_is_never_a_frame(line: bytes) -> None:
    parser = MonitorParser()
    assert parser.feed(line + b"\r") == []
    assert parser.stats.lines_ignored == 1
    assert parser.feed(b"580 10 00 8C 14 00 55 00 00\r") == [BATTERY]  # and it goes on


def test_nul_bytes_are_dropped_anywhere() -> None:
    # [K]: the PIC "may inadvertently insert" NUL characters.
    assert MonitorParser().feed(b"5\x0080 10 00 8C 14\x00 00 55 00 00\x00\r") == [BATTERY]


# --- conditions --------------------------------------------------------------------


def test_buffer_full_on_its_own_line_then_the_prompt() -> None:
    parser = MonitorParser()
    assert parser.feed(b"580 10 00 8C 14 00 55 00 00\rBUFFER FULL\r") == [BATTERY]
    assert parser.buffer_full
    assert not parser.prompt
    assert parser.feed(b"\r>") == []
    assert parser.prompt
    assert (parser.stats.buffer_fulls, parser.stats.prompts) == (1, 1)


def test_buffer_full_glued_to_the_frame_it_cut_short() -> None:
    # [K]: BUFFER FULL "may appear on the same line as the last (usually incomplete)
    # data frame".
    parser = MonitorParser()
    frames = parser.feed(b"714 01 00\r580 10 00 8CBUFFER FULL\r\r>")
    assert frames == [PARK_BRAKE]
    assert parser.buffer_full
    assert parser.prompt


def test_stopped_and_the_prompt() -> None:
    # [E] p. 21: "it will first complete that line and then print 'STOPPED'".
    parser = MonitorParser()
    assert parser.feed(b"714 01 00\rSTOPPED\r\r>") == [PARK_BRAKE]
    assert parser.stopped
    assert parser.prompt
    assert not parser.buffer_full


def test_unknown_command_and_errors_set_their_conditions() -> None:
    parser = MonitorParser()
    parser.feed(b"?\r\r>")
    assert parser.unknown_command
    assert parser.error is None
    parser.clear_conditions()
    assert not parser.unknown_command
    assert not parser.prompt
    parser.feed(b"CAN ERROR\r")
    assert parser.error == "CAN ERROR"
    parser.feed(b"ERR94\r")
    assert parser.error == "ERR94"
    parser.feed(b"7E8 03 41 0D <DATA ERROR\r")
    assert parser.error == "<DATA ERROR"
    assert parser.stats.errors == 3
    parser.clear_conditions()
    assert parser.error is None
    assert parser.stats.errors == 3  # counters stay


@pytest.mark.parametrize("prompt", [b">", bytes([0x3E | 0x80]), bytes([0x3E | 0xC0]), b"~"])
def test_the_prompt_with_random_high_bits(prompt: bytes) -> None:
    # [K] can327_is_ready_char: (c & 0x3f) == '>' ("Bits 0xc0 are sometimes set").
    parser = MonitorParser()
    assert parser.feed(b"714 01 00\rSTOPPED\r\r" + prompt + b"714 01 00\r") == [
        PARK_BRAKE,
        PARK_BRAKE,
    ]
    assert parser.prompt


def test_a_line_cut_by_the_prompt_is_no_frame() -> None:
    # The ELM327 ends every line with CR before its prompt: what comes between the
    # last CR and the prompt is not a whole frame.
    parser = MonitorParser()
    assert parser.feed(b"580 10 00 8C 14 00 55 00 00>") == []
    assert parser.prompt
    assert parser.feed(b"580 10 00 8C 14 00 55 00 00\r") == [BATTERY]


def test_reset_forgets_the_partial_line() -> None:
    parser = MonitorParser()
    parser.feed(b"580 10 00")
    parser.reset()
    assert parser.buffered == 0
    assert parser.feed(b" 8C\r714 01 00\r") == [PARK_BRAKE]


# --- bounded memory ------------------------------------------------------------------


def test_a_line_that_never_ends_keeps_at_most_one_line() -> None:
    parser = MonitorParser()
    chunk = b"5" * 20
    for _ in range(1_000_000 // len(chunk)):
        assert parser.feed(chunk) == []
        assert parser.buffered <= MAX_LINE
    assert parser.stats.overlong == 1
    # The overlong line ends at the next CR; the next line is read again.
    assert parser.feed(b"55\r580 10 00 8C 14 00 55 00 00\r") == [BATTERY]
    assert parser.stats.overlong == 1


def test_one_megabyte_in_one_call() -> None:
    parser = MonitorParser()
    assert parser.feed(b"A" * 1_000_000) == []
    assert parser.buffered == 0
    assert parser.feed(b"\r714 01 00\r") == [PARK_BRAKE]
    assert parser.feed(b"A" * 1_000_000 + b"\r714 01 00\r") == [PARK_BRAKE]
    assert parser.stats.overlong == 2


def test_an_overlong_line_ended_by_the_prompt() -> None:
    parser = MonitorParser()
    parser.feed(b"x" * (MAX_LINE + 1))
    assert parser.feed(b"yyy>714 01 00\r") == [PARK_BRAKE]
    assert parser.prompt


def test_whitespace_cannot_stretch_a_line_into_a_frame() -> None:
    parser = MonitorParser()
    assert parser.feed(b"580" + b" " * 1000 + b"10\r") == []
    assert parser.stats.overlong == 1


def test_the_longest_valid_lines_are_within_the_bound() -> None:
    longest = b"18 DA F1 10 8 11 22 33 44 55 66 77 88"
    assert len(longest) + len(b"BUFFER FULL") == MAX_LINE
    parser = MonitorParser()
    parser.feed(longest + b"\r" + longest[:20] + b"BUFFER FULL\r")
    assert parser.stats.extended == 1
    assert parser.buffer_full
    assert parser.stats.overlong == 0


# --- any split, any noise --------------------------------------------------------------


@st.composite
def frame_lines(draw: st.DrawFn) -> tuple[bytes, tuple[int, bytes]]:
    can_id = draw(st.integers(0, 0x7FF))
    data = draw(st.binary(max_size=8))
    style = draw(st.sampled_from(["spaces", "none", "dlc"]))
    header = b"%03X" % can_id
    digits = [b"%02X" % byte for byte in data]
    if style == "spaces":
        line = b" ".join([header, *digits])
    elif style == "none":
        line = header + b"".join(digits)
    else:
        line = b" ".join([header, b"%X" % len(data), *digits])
    return line, (can_id, data)


EXTENDED_LINES = [b"18 DA F1 10 03 41 0D 00", b"18DAF11003410D00", b"18 DA F1 10 3 03 41 0D"]
PROMPTS = [b">", b"\xbe", b"\xfe"]


@st.composite
def transcripts(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A monitor transcript mixing frames with every kind of noise; the frames in it."""
    end = draw(st.sampled_from([b"\r", b"\r\n"]))
    parts: list[bytes] = []
    expected: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["frame", "frame", "frame", "noise", "extended", "prompt"]))
        if kind == "frame":
            line, frame = draw(frame_lines())
            parts.append(line + end)
            expected.append(frame)
        elif kind == "noise":
            parts.append(draw(st.sampled_from(NOISE_LINES)) + end)
        elif kind == "extended":
            parts.append(draw(st.sampled_from(EXTENDED_LINES)) + end)
        else:
            parts.append(draw(st.sampled_from(PROMPTS)))
    stream = b"".join(parts)
    # NUL bytes anywhere ([K]): they change nothing.
    for position in draw(st.lists(st.integers(0, len(stream)), max_size=5)):
        stream = stream[:position] + b"\x00" + stream[position:]
    return stream, expected


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


@given(transcripts(), st.lists(st.integers(0, 10_000), max_size=40))
@settings(max_examples=400)
def test_any_split_of_any_transcript_gives_the_same_frames(
    transcript: tuple[bytes, list[tuple[int, bytes]]], cuts: list[int]
) -> None:
    stream, expected = transcript
    whole = MonitorParser().feed(stream)
    assert whole == expected
    parser = MonitorParser()
    frames = [frame for chunk in _cut(stream, cuts) for frame in parser.feed(chunk)]
    assert frames == expected


@given(transcripts())
def test_20_byte_notifications(transcript: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    stream, expected = transcript
    parser = MonitorParser()
    frames = [f for i in range(0, len(stream), 20) for f in parser.feed(stream[i : i + 20])]
    assert frames == expected


@given(st.lists(st.binary(max_size=64), max_size=50))
@settings(max_examples=300)
def test_garbage_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = MonitorParser()
    for chunk in chunks:
        for can_id, data in parser.feed(chunk):
            assert 0 <= can_id <= 0x7FF
            assert len(data) <= 8
        assert parser.buffered <= MAX_LINE


@pytest.mark.parametrize("line", [b"800", b"FFF", b"800 10 00", b"FFF RTR", b"800RTR", b"9AB 8"])
def test_headers_above_11_bits_are_no_frames(line: bytes) -> None:
    parser = MonitorParser()
    assert parser.feed(line + b"\r") == []
    assert parser.stats.lines_ignored == 1


@given(st.text(alphabet="0123456789ABCDEFR T\r\n>", max_size=300), st.integers(1, 40))
@settings(max_examples=500)
def test_hex_like_garbage_never_raises(text: str, size: int) -> None:
    stream = text.encode()
    parser = MonitorParser()
    for i in range(0, len(stream), size):
        for can_id, data in parser.feed(stream[i : i + size]):
            assert 0 <= can_id <= 0x7FF
            assert len(data) <= 8


@given(st.lists(st.sampled_from([*NOISE_LINES, b"\r", b">", b"580 10", b" 00\r", b"\x00"])))
def test_noise_pieces_in_any_order_never_raise(pieces: list[bytes]) -> None:
    parser = MonitorParser()
    for piece in pieces:
        parser.feed(piece)
    assert parser.buffered <= MAX_LINE
