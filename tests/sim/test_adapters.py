"""The adapter emulators against transcripts written by hand from [E], [K] and [W].

Time is a parameter: nothing here sleeps. ``INSTANT`` quirks send every byte at
once, so a transcript is what one ``read`` returns; the throughput tests use
slow links on purpose.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2x.sim.adapters import (
    BLE_THROUGHPUT,
    Elm327Emulator,
    Elm327Quirks,
    SlcanEmulator,
)
from o2x.sim.can import ami_frames, vin_frames
from o2x.sim.model import VehicleModel

INSTANT = Elm327Quirks(throughput=math.inf)
#: 0x580: 1.6 A, 52.60 V, SoC 85 %.
BATTERY = (0x580, bytes.fromhex("10008C1400550000"))
LINE_S1 = b"580 10 00 8C 14 00 55 00 00"
#: The same without spaces: 3 + 16 characters (the shared reference's "580100008C1400550000"
#: has one 0 too many).
LINE_S0 = b"58010008C1400550000"
#: The monitor setup of the shared reference, section 3 (after its ATZ), spaces on.
SETUP = b"ATE0\rATL0\rATS1\rATH1\rATSP6\rATCAF0\r"


def elm(quirks: Elm327Quirks = INSTANT, version: str = "ELM327 v1.5", seed: int = 0):
    return Elm327Emulator(quirks=quirks, version=version, seed=seed)


def talk(adapter: Elm327Emulator | SlcanEmulator, data: bytes, now: float = 0.0) -> bytes:
    """Write ``data`` and return everything the adapter has sent by then."""
    adapter.write(data, now)
    return adapter.read(now)


def monitoring(setup: bytes = SETUP, quirks: Elm327Quirks = INSTANT) -> Elm327Emulator:
    adapter = elm(quirks)
    talk(adapter, b"ATZ\r")
    talk(adapter, setup + b"ATMA\r")
    assert adapter.monitoring
    return adapter


# --- ELM327: answers ----------------------------------------------------------------------


def test_atz_echoes_then_prints_the_banner_after_two_empty_lines():
    # [K]'s "AT WS" transcript: the echoed line, two empty lines, the version, an empty line, >.
    assert talk(elm(), b"ATZ\r") == b"ATZ\r\r\rELM327 v1.5\r\r>"


def test_atws_is_a_reset_too_and_the_version_is_the_adapters():
    adapter = elm(version="ELM327 v1.4b")
    assert talk(adapter, b"AT WS\r") == b"AT WS\r\r\rELM327 v1.4b\r\r>"
    assert talk(adapter, b"ATI\r") == b"ATI\rELM327 v1.4b\r\r>"


def test_echo_is_on_by_default_and_ate0_turns_it_off():
    adapter = elm()
    assert talk(adapter, b"ATI\r") == b"ATI\rELM327 v1.5\r\r>"
    # The ATE0 line itself is still echoed: echo was on when it arrived.
    assert talk(adapter, b"ATE0\r") == b"ATE0\rOK\r\r>"
    assert talk(adapter, b"ATI\r") == b"ELM327 v1.5\r\r>"
    assert talk(adapter, b"ATE1\r") == b"OK\r\r>"
    assert talk(adapter, b"ATI\r") == b"ATI\rELM327 v1.5\r\r>"


def test_atsp6_is_ok_an_empty_line_and_a_prompt():
    adapter = elm()
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"ATSP6\r") == b"OK\r\r>"


def test_linefeeds_follow_every_cr_with_atl1():
    adapter = elm()
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"ATL1\r") == b"OK\r\n\r\n>"
    assert talk(adapter, b"ATSP6\r") == b"OK\r\n\r\n>"
    assert talk(adapter, b"ATL0\r") == b"OK\r\r>"


def test_a_reset_brings_the_defaults_back():
    adapter = elm()
    talk(adapter, b"ATE0\rATL1\r")
    # Not echoed (echo was off when it came), answered after the reset: no linefeeds.
    assert talk(adapter, b"ATZ\r", now=1.0) == b"\r\rELM327 v1.5\r\r>"
    assert talk(adapter, b"ATI\r", now=1.0) == b"ATI\rELM327 v1.5\r\r>"


def test_unknown_commands_answer_a_question_mark():
    adapter = elm()
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"ATFOO\r") == b"?\r\r>"
    assert talk(adapter, b"HELLO\r") == b"?\r\r>"
    assert talk(adapter, b"AT\r") == b"?\r\r>"
    assert talk(adapter, b"ATSP6X\r") == b"?\r\r>"


def test_obd_requests_get_no_data_the_ami_answers_none():
    adapter = elm()
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"01 00\r") == b"NO DATA\r\r>"


def test_commands_ignore_case_spaces_and_control_characters():
    adapter = elm()
    assert talk(adapter, b"a t e 0\r") == b"a t e 0\rOK\r\r>"
    assert talk(adapter, b"\natsp\t6\r") == b"OK\r\r>"
    assert talk(adapter, b"AtDp\r") == b"ISO 15765-4 CAN (11 bit ID, 500 kbaud)\r\r>"


def test_an_empty_line_repeats_the_last_command():
    adapter = elm()
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"ATI\r") == b"ELM327 v1.5\r\r>"
    assert talk(adapter, b"\r") == b"ELM327 v1.5\r\r>"
    assert adapter.stats.commands == 3


def test_after_a_reset_an_empty_line_gets_only_a_prompt():
    adapter = elm()
    talk(adapter, b"ATZ\r")
    assert talk(adapter, b"\r") == b"\r>"


def test_a_line_longer_than_the_buffer_is_refused():
    adapter = elm()
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"AT" + b"0" * 200 + b"\r") == b"?\r\r>"
    assert talk(adapter, b"ATI\r") == b"ELM327 v1.5\r\r>"


def test_sp_saves_the_protocol_and_tp_only_tries_it():
    adapter = elm()
    talk(adapter, b"ATE0\rATSP6\r")
    talk(adapter, b"ATTP8\r")
    assert talk(adapter, b"ATDPN\r") == b"8\r\r>"
    talk(adapter, b"ATZ\rATE0\r", now=1.0)
    assert talk(adapter, b"ATDPN\r", now=2.0) == b"6\r\r>"
    talk(adapter, b"ATSPA7\r", now=2.0)
    assert talk(adapter, b"ATDP\r", now=2.0) == b"AUTO, ISO 15765-4 CAN (29 bit ID, 500 kbaud)\r\r>"


def test_a_reset_drops_what_arrived_while_it_restarted():
    # [W] does the same for Car Scanner's "ATZ\rATE0\r" in one write.
    adapter = elm(Elm327Quirks(throughput=math.inf, reset_time=0.5))
    adapter.write(b"ATZ\rATE0\r", now=0.0)
    adapter.write(b"ATE0\r", now=0.499)
    assert adapter.read(0.499) == b"ATZ\r"
    assert adapter.read(0.5) == b"\r\rELM327 v1.5\r\r>"
    assert talk(adapter, b"ATI\r", now=0.5) == b"ATI\rELM327 v1.5\r\r>"  # echo still on


def test_without_a_reset_time_a_pipelined_command_survives_the_reset():
    assert (
        talk(elm(), b"ATZ\rATE0\rATI\r")
        == b"ATZ\r\r\rELM327 v1.5\r\r>ATE0\rOK\r\r>ELM327 v1.5\r\r>"
    )


def test_the_init_script_of_can327_is_understood():
    adapter = elm()
    script = (
        b"AT WS\rAT PP FF OFF\rAT M0\rAT AL\rAT BI\rAT CAF0\rAT CFC0\rAT CF 000\rAT CM 000\r"
        b"AT E1\rAT H1\rAT L0\rAT SH 7DF\rAT ST FF\rAT AT0\rAT D1\rAT S1\rAT TP B\r"
        b"ATCSM0\rATR0\rATPC\rATPB E001\r"
    )
    commands = script.count(b"\r")
    answers = talk(adapter, script)
    assert b"?" not in answers
    assert answers.count(b"OK\r\r>") == commands - 1  # all but the warm start


# --- ELM327: monitoring -------------------------------------------------------------------


def test_atma_prints_a_frame_with_its_header_and_spaces():
    adapter = monitoring()
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == LINE_S1 + b"\r"


def test_atma_with_spaces_off():
    adapter = monitoring(SETUP + b"ATS0\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == LINE_S0 + b"\r"


def test_atma_with_the_dlc_and_without_headers():
    adapter = monitoring(SETUP + b"ATD1\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == b"580 8 10 00 8C 14 00 55 00 00\r"
    adapter = monitoring(SETUP + b"ATH0\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == b"10 00 8C 14 00 55 00 00\r"


def test_atma_with_linefeeds():
    adapter = monitoring(SETUP + b"ATL1\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == LINE_S1 + b"\r\n"


def test_a_29_bit_frame_shows_four_header_bytes():
    adapter = monitoring()
    adapter.bus_frame(0x18DAF110, bytes.fromhex("0241"), now=1.0)
    assert adapter.read(1.0) == b"18 DA F1 10 02 41\r"


def test_no_frame_is_printed_before_atma():
    adapter = elm()
    talk(adapter, SETUP)
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == b""
    assert adapter.stats.frames_seen == 1
    assert adapter.stats.frames_shown == 0


def test_cf_and_cm_filter_what_atma_prints():
    adapter = monitoring(SETUP + b"ATCF500\rATCM700\r")
    adapter.bus_frame(0x123, bytes(8), now=1.0)
    adapter.bus_frame(*BATTERY, now=1.1)
    adapter.bus_frame(0x713, bytes(7), now=1.2)
    assert adapter.read(2.0) == LINE_S1 + b"\r"
    assert adapter.stats.frames_filtered == 2


def test_cra_with_dont_care_digits_filters_too_and_ar_clears_it():
    adapter = monitoring(SETUP + b"AT CRA 58X\r")
    adapter.bus_frame(0x594, bytes(8), now=1.0)
    adapter.bus_frame(0x582, bytes.fromhex("FFFF"), now=1.0)
    assert adapter.read(1.0) == b"582 FF FF\r"
    adapter.write(b"x", now=2.0)
    talk(adapter, b"ATAR\rATMA\r", now=3.0)
    adapter.bus_frame(0x594, bytes.fromhex("15000016"), now=4.0)
    assert adapter.read(4.0) == b"594 15 00 00 16\r"


def test_any_character_stops_monitoring_and_is_discarded():
    adapter = monitoring()
    adapter.bus_frame(*BATTERY, now=1.0)
    adapter.write(b"y", now=2.0)
    assert not adapter.monitoring
    adapter.bus_frame(*BATTERY, now=3.0)
    assert adapter.read(3.0) == LINE_S1 + b"\rSTOPPED\r\r>"
    # The 'y' left nothing behind: the next command is whole.
    assert talk(adapter, b"ATI\r", now=4.0) == b"ELM327 v1.5\r\r>"


def test_input_after_the_stop_character_waits_for_the_prompt():
    adapter = monitoring()
    assert talk(adapter, b"xATI\r", now=1.0) == b"STOPPED\r\r>ELM327 v1.5\r\r>"


def test_the_lines_already_made_go_out_before_stopped():
    adapter = monitoring(quirks=Elm327Quirks(throughput=1000))
    adapter.read(10.0)
    for i in range(5):
        adapter.bus_frame(*BATTERY, now=10.0 + i * 0.001)
    adapter.write(b"y", now=10.01)
    first = adapter.read(10.02)  # 20 bytes by now
    assert len(first) == 20
    rest = adapter.read(11.0)
    assert first + rest == (LINE_S1 + b"\r") * 5 + b"STOPPED\r\r>"


def test_buffer_full_when_frames_come_faster_than_the_link():
    quirks = Elm327Quirks(throughput=1000)
    adapter = monitoring(quirks=quirks)
    adapter.read(10.0)
    line = LINE_S1 + b"\r"
    for i in range(40):  # 28 bytes a millisecond, the link takes 1 byte a millisecond
        adapter.bus_frame(*BATTERY, now=10.0 + i * 0.001)
    assert not adapter.monitoring
    out = adapter.read(100.0)
    assert out.endswith(b" BUFFER FULL\r\r>")
    body = out[: -len(b" BUFFER FULL\r\r>")]
    shown = adapter.stats.frames_shown
    assert body[: shown * len(line)] == line * shown
    cut = body[shown * len(line) :]
    assert 0 < len(cut) < len(line)
    assert line.startswith(cut)  # the last line cut short, on the same line as the message
    assert len(body) == quirks.buffer_size + shown  # one byte left the buffer a millisecond
    assert adapter.stats.buffer_full == 1
    assert adapter.stats.frames_lost == 1
    assert shown + 1 < 40  # the frames after BUFFER FULL were not printed


def test_no_buffer_full_at_the_cars_rate_and_the_default_throughput():
    # Every AMI message at 10 Hz plus the VIN once a second: about 1.5 kB/s, under BLE's 2.7.
    model = VehicleModel(seed=1)
    adapter = monitoring(quirks=Elm327Quirks())
    adapter.read(4.0)
    received = bytearray()
    for step in range(600):
        now = 5.0 + step * 0.1
        frames = ami_frames(model) + (vin_frames("VR1AB12C3D4567890") if step % 10 == 0 else [])
        for can_id, data in frames:
            adapter.bus_frame(can_id, data, now)
        received += adapter.read(now)
    received += adapter.read(now + 1.0)
    assert adapter.monitoring
    assert adapter.stats.buffer_full == 0
    assert received.count(b"\r") == adapter.stats.frames_shown == adapter.stats.frames_seen


def test_buffer_full_at_the_cars_rate_on_a_slow_phone():
    # 20 bytes every 30 ms (a common connection interval) is a quarter of the default.
    model = VehicleModel(seed=1)
    adapter = monitoring(quirks=Elm327Quirks(throughput=BLE_THROUGHPUT / 4))
    for step in range(100):
        for can_id, data in ami_frames(model):
            adapter.bus_frame(can_id, data, 5.0 + step * 0.1)
    assert adapter.stats.buffer_full == 1
    assert adapter.read(60.0).endswith(b"BUFFER FULL\r\r>")


def test_auto_formatting_on_shows_single_frames_payloads_and_marks_bad_pci_bytes():
    adapter = monitoring(SETUP + b"ATCAF1\rATH0\r")
    adapter.bus_frame(0x7E8, bytes.fromhex("0441050000AAAAAA"), now=1.0)
    adapter.bus_frame(0x713, bytes.fromhex("82040400000000"), now=1.0)
    adapter.bus_frame(0x7E8, bytes.fromhex("1014490201314731"), now=1.0)
    assert adapter.read(1.0) == (
        b"41 05 00 00\r82 04 04 00 00 00 00 <DATA ERROR\r10 14 49 02 01 31 47 31\r"
    )


def test_auto_formatting_with_headers_shows_the_bytes_as_received():
    adapter = monitoring(SETUP + b"ATCAF1\r")
    adapter.bus_frame(0x7E8, bytes.fromhex("0441050000AAAAAA"), now=1.0)
    assert adapter.read(1.0) == b"7E8 04 41 05 00 00 AA AA AA\r"


def test_only_the_ami_s_protocols_hear_its_bus():
    for protocol, heard in ((b"0", True), (b"7", True), (b"8", False), (b"3", False)):
        adapter = monitoring(SETUP + b"ATSP" + protocol + b"\r")
        adapter.bus_frame(*BATTERY, now=1.0)
        assert (adapter.read(1.0) != b"") is heard, protocol


def test_the_repeat_of_atma_monitors_again():
    adapter = monitoring()
    talk(adapter, b"y", now=1.0)
    talk(adapter, b"\r", now=2.0)
    assert adapter.monitoring


# --- ELM327: throughput and quirks --------------------------------------------------------


def test_read_returns_only_what_the_link_has_carried_by_then():
    adapter = elm(Elm327Quirks(throughput=100))
    adapter.write(b"ATZ\r", now=0.0)
    assert adapter.read(0.0) == b""
    assert adapter.read(0.05) == b"ATZ\r\r"  # 5 bytes in 50 ms
    assert adapter.read(0.05) == b""
    assert adapter.read(1.0) == b"\rELM327 v1.5\r\r>"


def test_ignores_spaces_off():
    adapter = monitoring(
        SETUP + b"ATS0\r", quirks=Elm327Quirks(throughput=math.inf, ignores_spaces_off=True)
    )
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == LINE_S1 + b"\r"


def test_keeps_echo():
    adapter = elm(Elm327Quirks(throughput=math.inf, keeps_echo=True))
    assert talk(adapter, b"ATE0\r") == b"ATE0\rOK\r\r>"
    assert talk(adapter, b"ATI\r") == b"ATI\rELM327 v1.5\r\r>"


def test_no_can_refuses_can_protocols_and_hears_no_bus():
    adapter = elm(Elm327Quirks(throughput=math.inf, no_can=True))
    talk(adapter, b"ATE0\r")
    assert talk(adapter, b"ATSP6\r") == b"?\r\r>"
    assert talk(adapter, b"ATSPA8\r") == b"?\r\r>"
    assert talk(adapter, b"ATSP0\r") == b"OK\r\r>"
    assert talk(adapter, b"0100\r") == b"UNABLE TO CONNECT\r\r>"
    talk(adapter, b"ATH1\rATMA\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == b""
    assert talk(adapter, b"y", now=2.0) == b"STOPPED\r\r>"


def test_never_prompts():
    adapter = monitoring(quirks=Elm327Quirks(throughput=math.inf, never_prompts=True))
    adapter.write(b"y", now=1.0)
    out = adapter.read(1.0) + talk(adapter, b"ATZ\rATI\r", now=2.0)
    assert b">" not in out
    assert b"STOPPED\r\r" in out
    assert b"ELM327 v1.5\r\r" in out


def test_answer_delay_holds_the_answer_back_not_the_echo():
    adapter = elm(Elm327Quirks(throughput=math.inf, answer_delay=0.5))
    adapter.write(b"ATI\rATI\r", now=0.0)
    assert adapter.read(0.0) == b"ATI\r"
    assert adapter.read(0.499) == b""
    # The second command waits for the first's answer, then takes its own delay.
    assert adapter.read(0.5) == b"ELM327 v1.5\r\r>ATI\r"
    assert adapter.read(0.999) == b""
    assert adapter.read(1.0) == b"ELM327 v1.5\r\r>"


def test_answer_delay_delays_monitoring_and_stopped():
    adapter = elm(Elm327Quirks(throughput=math.inf, answer_delay=0.2))
    adapter.write(SETUP + b"ATMA\r", now=0.0)  # seven commands: 1.4 s
    adapter.read(10.0)
    assert adapter.monitoring
    adapter.bus_frame(*BATTERY, now=10.0)
    adapter.write(b"x", now=11.0)
    adapter.bus_frame(*BATTERY, now=11.1)  # stopped already: not printed
    assert adapter.read(11.19) == LINE_S1 + b"\r"
    assert adapter.read(11.2) == b"STOPPED\r\r>"


def test_garbage_lands_in_lines_but_not_in_the_echo():
    adapter = elm(Elm327Quirks(throughput=math.inf, garbage=1.0))
    out = talk(adapter, b"ATI\r")
    assert out.startswith(b"ATI\r")
    answer = out[len(b"ATI\r") :]
    assert answer.endswith(b"\r\r>")
    line = answer[: -len(b"\r\r>")]
    junk = bytes(b for b in line if b == 0 or b >= 0x80)
    assert 1 <= len(junk) <= 3
    assert bytes(b for b in line if b != 0 and b < 0x80) == b"ELM327 v1.5"


def test_garbage_is_seeded():
    def run(seed: int) -> bytes:
        adapter = elm(Elm327Quirks(throughput=math.inf, garbage=0.5), seed=seed)
        return talk(adapter, b"ATI\r" * 50)

    assert run(3) == run(3)
    assert run(3) != run(4)
    clean = talk(elm(), b"ATI\r" * 50)
    assert clean == b"ATI\rELM327 v1.5\r\r>" * 50


def test_time_may_not_go_backwards():
    adapter = elm()
    adapter.read(1.0)
    with pytest.raises(ValueError, match="backwards"):
        adapter.write(b"ATI\r", now=0.5)
    with pytest.raises(ValueError, match="backwards"):
        SlcanEmulator().read(math.nan)


def test_frames_must_be_can_frames():
    with pytest.raises(ValueError, match="8 bytes"):
        elm().bus_frame(0x580, bytes(9), now=0.0)
    with pytest.raises(ValueError, match="CAN ID"):
        SlcanEmulator().bus_frame(0x20000000, b"", now=0.0)


def test_quirks_are_validated():
    with pytest.raises(ValueError, match="garbage"):
        Elm327Quirks(garbage=1.5)
    with pytest.raises(ValueError, match="throughput"):
        Elm327Quirks(throughput=0)
    with pytest.raises(ValueError, match="errors"):
        SlcanEmulator(errors="strict")  # type: ignore[arg-type]


def test_input_written_while_busy_is_bounded():
    adapter = elm(Elm327Quirks(throughput=math.inf, answer_delay=10.0))
    adapter.write(b"ATI\r", now=0.0)
    adapter.write(b"A" * 100_000, now=0.0)
    assert adapter.stats.input_dropped > 90_000


# --- ELM327: hostile quirks ---------------------------------------------------------------

SLOW = 1000.0  # bytes a second: a link slow enough to count its bytes by hand


def test_endless_garbage_sends_random_bytes_at_the_links_rate_and_never_answers():
    adapter = elm(Elm327Quirks(endless_garbage=True, throughput=SLOW))
    assert talk(adapter, b"ATZ\r", now=1.0) == b""  # it starts with the first call
    adapter.bus_frame(*BATTERY, now=1.0)
    first = adapter.read(1.5)
    assert len(first) == 500
    assert len(adapter.read(1.5)) == 0
    assert len(adapter.read(3.0)) == 1500
    assert adapter.stats.input_dropped == 4  # input is ignored, and so is the bus
    assert adapter.stats.commands == adapter.stats.frames_shown == 0
    assert not adapter.monitoring
    # Random: all manner of bytes, the prompt's among them, not an answer's text.
    assert len(set(first)) > 200
    assert b"OK" not in first
    assert b"ELM327" not in first


def test_endless_garbage_is_seeded_and_does_not_depend_on_how_it_is_read():
    def run(seed: int, reads: int) -> bytes:
        adapter = elm(Elm327Quirks(endless_garbage=True, throughput=SLOW), seed=seed)
        adapter.read(0.0)
        return b"".join(adapter.read(2.0 * (i + 1) / reads) for i in range(reads))

    assert run(1, 1) == run(1, 7) == run(1, 200)
    assert len(run(1, 1)) == 2000
    assert run(1, 1) != run(2, 1)


def test_endless_output_after_a_long_gap_is_bounded():
    # A caller that reads once a day gets the last 64 KiB, not 86 MB.
    adapter = elm(Elm327Quirks(endless_garbage=True))
    adapter.read(0.0)
    assert len(adapter.read(86_400.0)) == 65_536
    assert len(adapter.read(86_400.0 + 1.5)) == 4000


def test_endless_line_answers_until_atma_then_never_ends():
    adapter = elm(Elm327Quirks(endless_line=True, throughput=SLOW))
    setup = talk(adapter, b"ATE0\rATH1\rATMA\r", now=0.0) + adapter.read(1.0)
    assert setup.startswith(b"ATE0\rOK\r\r>OK\r\r>")
    assert adapter.monitoring
    line = setup[len(b"ATE0\rOK\r\r>OK\r\r>") :] + adapter.read(5.0)
    # From when the answers before it have left (15 bytes at 1 byte a millisecond) to 5 s.
    assert len(line) == 4985
    assert set(line) <= set(b"0123456789ABCDEF ")
    assert b"\r" not in line
    assert b">" not in line


def test_endless_line_cannot_be_stopped_and_shows_no_frame():
    adapter = monitoring(quirks=Elm327Quirks(endless_line=True, throughput=SLOW))
    adapter.read(1.0)
    adapter.write(b"y", now=1.0)  # would stop any other monitor
    adapter.bus_frame(*BATTERY, now=1.5)
    out = talk(adapter, b"ATZ\r", now=2.0) + adapter.read(3.0)
    assert adapter.monitoring
    assert len(out) == 2000
    assert b"\r" not in out
    assert b"STOPPED" not in out
    assert b"ELM327" not in out
    assert adapter.stats.frames_shown == 0
    assert adapter.stats.input_dropped == 5


def test_endless_quirks_need_a_finite_throughput():
    with pytest.raises(ValueError, match="finite"):
        Elm327Quirks(endless_garbage=True, throughput=math.inf)
    with pytest.raises(ValueError, match="finite"):
        Elm327Quirks(endless_line=True, throughput=math.inf)
    with pytest.raises(ValueError, match="flood"):
        Elm327Quirks(flood=-1.0)


def _lines(out: bytes) -> list[bytes]:
    return [line for line in out.split(b"\r") if line]


def test_flood_shows_made_up_frames_at_its_rate_whatever_the_filter():
    adapter = monitoring(
        SETUP + b"ATCF500\rATCM700\r", quirks=Elm327Quirks(throughput=math.inf, flood=100)
    )
    adapter.bus_frame(*BATTERY, now=0.5)
    out = adapter.read(1.0)
    lines = _lines(out)
    assert LINE_S1 in lines  # the car's frames are shown too
    flooded = [line for line in lines if line != LINE_S1]
    assert len(flooded) == 100 == adapter.stats.frames_flooded
    ids = {int(line[:3], 16) for line in flooded}
    known = {0x580, 0x581, 0x582, 0x593, 0x594, 0x710, 0x711, 0x712, 0x713, 0x714}
    assert len(ids) > 50  # random IDs, all over the 11-bit range...
    assert not ids & known  # ...none of them the AMI's
    assert any(not 0x500 <= can_id <= 0x5FF for can_id in ids)  # the filter lets none pass
    for line in flooded:  # frames as the monitor shows them: ID, then 0 to 8 bytes
        head, *data = line.split(b" ")
        assert len(head) == 3
        assert len(data) <= 8
        assert all(len(b) == 2 for b in data)
        bytes.fromhex(b"".join(data).decode())
    assert adapter.stats.frames_shown == 1  # the car's


def test_no_flood_outside_monitoring():
    adapter = elm(Elm327Quirks(throughput=math.inf, flood=100))
    talk(adapter, b"ATE0\rATH1\rATCAF0\r")
    assert adapter.read(5.0) == b""
    talk(adapter, b"ATMA\r", now=5.0)
    adapter.write(b"y", now=5.5)
    assert adapter.read(10.0).endswith(b"STOPPED\r\r>")
    assert adapter.stats.frames_flooded == 50
    assert adapter.read(20.0) == b""


def test_a_flood_beyond_the_link_ends_in_buffer_full_and_again_after_each_atma():
    adapter = monitoring(quirks=Elm327Quirks(flood=1000))  # ~21 kB/s into a 2.7 kB/s link
    out = adapter.read(2.0)
    assert out.endswith(b"BUFFER FULL\r\r>")
    assert adapter.stats.buffer_full == 1
    assert not adapter.monitoring
    talk(adapter, b"ATMA\r", now=2.0)
    assert adapter.read(4.0).endswith(b"BUFFER FULL\r\r>")
    assert adapter.stats.buffer_full == 2
    # Of the 4,000 due, what the 512-byte buffer held (and what left while it filled), twice.
    assert 40 < adapter.stats.frames_flooded < 200


def test_flood_is_seeded():
    def run(seed: int) -> bytes:
        adapter = elm(Elm327Quirks(throughput=math.inf, flood=50), seed=seed)
        talk(adapter, b"ATZ\r" + SETUP + b"ATMA\r")
        return adapter.read(1.0)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_garbage_prompts_off_keeps_prompt_like_bytes_out_of_the_garbage():
    def junk(prompts: bool) -> set[int]:
        adapter = elm(Elm327Quirks(throughput=math.inf, garbage=1.0, garbage_prompts=prompts))
        out = talk(adapter, b"ATE0\r" + b"ATI\r" * 2000)
        return {b for b in out if b >= 0x80}

    assert junk(True) & {0xBE, 0xFE}
    assert not junk(False) & {0xBE, 0xFE}
    assert len(junk(False)) == 126


# --- WiCAN slcan --------------------------------------------------------------------------


def wican(errors: str = "wican") -> SlcanEmulator:
    return SlcanEmulator(throughput=math.inf, errors=errors)


def test_close_set_bitrate_open_are_acked_with_cr():
    adapter = wican()
    assert talk(adapter, b"C\r") == b"\r"
    assert talk(adapter, b"S6\r") == b"\r"
    assert talk(adapter, b"O\r") == b"\r"
    assert adapter.is_open
    assert adapter.bitrate == 500_000


def test_a_frame_while_open():
    adapter = wican()
    talk(adapter, b"C\rS6\rO\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == b"t580810008C1400550000\r"


def test_no_frame_while_closed():
    adapter = wican()
    adapter.bus_frame(*BATTERY, now=1.0)
    talk(adapter, b"S6\rO\rC\r", now=2.0)
    adapter.bus_frame(*BATTERY, now=3.0)
    assert adapter.read(3.0) == b""
    assert adapter.stats.frames_sent == 0


def test_a_29_bit_frame_and_a_short_one():
    adapter = wican()
    talk(adapter, b"O\r")
    adapter.bus_frame(0x18DAF110, bytes.fromhex("0241"), now=1.0)
    adapter.bus_frame(0x714, b"\x01", now=1.0)
    assert adapter.read(1.0) == b"T18DAF11020241\rt714101\r"


def test_timestamps_with_z1_are_milliseconds_mod_60000():
    adapter = wican()
    talk(adapter, b"Z1\rO\r")
    adapter.bus_frame(*BATTERY, now=1.2345)
    adapter.bus_frame(*BATTERY, now=61.5)
    adapter.write(b"Z0\r", now=62.0)
    adapter.bus_frame(*BATTERY, now=62.0)
    assert adapter.read(62.0) == (
        b"t580810008C140055000004D2\r"  # 1234 ms
        b"t580810008C140055000005DC\r"  # 61500 ms mod 60000 = 1500
        b"\rt580810008C1400550000\r"
    )


def test_version_serial_and_status_are_wicans():
    adapter = wican()
    assert talk(adapter, b"V\rv\rN\rF\r") == b"V2011\rV2011\rN43010123\rF00\r"


def test_wican_answers_nothing_to_an_unknown_command():
    # [W] has no BEL: an unknown letter is skipped, an empty line answered with nothing.
    adapter = wican()
    assert talk(adapter, b"X\r\r?\r") == b""
    assert talk(adapter, b"XO\r") == b"\r"
    assert adapter.is_open


def test_wican_acks_what_it_cannot_do():
    adapter = wican()
    assert talk(adapter, b"S9\r") == b"\r"
    assert adapter.bitrate == 500_000
    talk(adapter, b"O\r")
    assert talk(adapter, b"S4\r") == b"\r"  # refused while open
    assert adapter.bitrate == 500_000
    assert adapter.stats.errors == 2


def test_lawicel_errors_are_bel():
    adapter = wican(errors="lawicel")
    assert talk(adapter, b"X\r") == b"\x07"
    assert talk(adapter, b"S9\r") == b"\x07"
    assert talk(adapter, b"S6x\r") == b"\x07"
    assert talk(adapter, b"C\r") == b"\x07"  # not open
    assert talk(adapter, b"t5808\r") == b"\x07"  # closed
    assert talk(adapter, b"S6\rO\r") == b"\r\r"
    assert talk(adapter, b"O\r") == b"\x07"  # open already
    assert talk(adapter, b"t7DF20201\r") == b"z\r"


def test_a_line_feed_before_a_command_is_harmless():
    for errors in ("wican", "lawicel"):
        adapter = wican(errors=errors)
        assert talk(adapter, b"S6\r\nO\r\n") == b"\r\r", errors
        assert adapter.is_open


def test_another_bitrate_hears_nothing_of_the_amis_bus():
    adapter = wican()
    talk(adapter, b"S4\rO\r")
    adapter.bus_frame(*BATTERY, now=1.0)
    assert adapter.read(1.0) == b""
    assert adapter.bitrate == 125_000


def test_frames_the_host_sends_are_collected_when_open_and_not_listening():
    adapter = wican()
    talk(adapter, b"t7DF20201\r")
    talk(adapter, b"L\rt7DF20201\rC\r")
    assert adapter.transmitted == []
    talk(adapter, b"O\rt7DF20201\rT18DB33F120210\rr7DF8\r")
    assert adapter.transmitted == [
        (0x7DF, b"\x02\x01"),
        (0x18DB33F1, b"\x02\x10"),
        (0x7DF, b""),
    ]


def test_frames_are_lost_when_the_bluetooth_queue_is_full():
    adapter = SlcanEmulator(throughput=220, queue_size=3)  # one 22-byte line each 100 ms
    talk(adapter, b"O\r")
    adapter.read(1.0)
    for i in range(10):
        adapter.bus_frame(*BATTERY, now=1.0 + i * 0.001)
    assert adapter.stats.frames_sent == 3
    assert adapter.stats.frames_lost == 7
    assert adapter.read(2.0) == b"t580810008C1400550000\r" * 3


# --- any split of the host's writes gives the same bytes ----------------------------------

COMMANDS = st.sampled_from(
    [
        b"ATZ\r",
        b"ATWS\r",
        b"ATE0\r",
        b"ATE1\r",
        b"AT L1\r",
        b"atl0\r",
        b"ATS0\r",
        b"ATS1\r",
        b"ATH1\r",
        b"ATD1\r",
        b"ATCAF0\r",
        b"ATSP6\r",
        b"ATCF 500\r",
        b"ATCM 700\r",
        b"ATCRA58X\r",
        b"ATAR\r",
        b"ATMA\r",
        b"ATI\r",
        b"\r",
        b"0100\r",
        b"ATFOO\r",
        b"y",
        b"x\n",
    ]
)
FRAMES = st.sampled_from(
    [BATTERY, (0x123, bytes(8)), (0x713, bytes.fromhex("82040400000000")), (0x714, b"\x01")]
)
#: A session: at each step the host writes some commands and the car sends some frames.
SESSIONS = st.lists(
    st.tuples(st.lists(COMMANDS, max_size=4), st.lists(FRAMES, max_size=6)), max_size=12
)


def play(adapter: Elm327Emulator | SlcanEmulator, session, cuts) -> bytes:
    """Run ``session``, each step's writes cut into pieces as ``cuts`` says."""
    out = bytearray()
    for step, (commands, frames) in enumerate(session):
        now = step * 0.01
        data = b"".join(commands)
        start = 0
        for cut in [*sorted({c % (len(data) + 1) for c in cuts[step]}), len(data)]:
            adapter.write(data[start:cut], now)
            start = cut
        for can_id, payload in frames:
            adapter.bus_frame(can_id, payload, now)
        out += adapter.read(now)
    return bytes(out + adapter.read(1000.0))


ELM_QUIRKS = st.builds(
    Elm327Quirks,
    garbage=st.sampled_from([0.0, 0.3]),
    answer_delay=st.sampled_from([0.0, 0.004, 0.03]),
    buffer_size=st.sampled_from([64, 512]),
    throughput=st.sampled_from([math.inf, BLE_THROUGHPUT, 2000.0]),
    never_prompts=st.booleans(),
    flood=st.sampled_from([0.0, 300.0]),
)


@settings(max_examples=300, deadline=None)
@given(SESSIONS, ELM_QUIRKS, st.data())
def test_elm327_output_does_not_depend_on_how_writes_are_split(session, quirks, data):
    cuts = [data.draw(st.lists(st.integers(0, 200), max_size=6)) for _ in session]
    whole = play(Elm327Emulator(quirks=quirks, seed=1), session, [[] for _ in session])
    split = play(Elm327Emulator(quirks=quirks, seed=1), session, cuts)
    assert split == whole


SLCAN_COMMANDS = st.sampled_from(
    [b"C\r", b"S6\r", b"S4\r", b"O\r", b"L\r", b"Z1\r", b"Z0\r", b"V\r", b"N\r", b"F\r", b"S9\r",
     b"X\r", b"\r", b"\n", b"t7DF20201\r", b"T18DB33F120210\r"]
)  # fmt: skip
SLCAN_SESSIONS = st.lists(
    st.tuples(st.lists(SLCAN_COMMANDS, max_size=4), st.lists(FRAMES, max_size=6)), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(
    SLCAN_SESSIONS,
    st.sampled_from(["wican", "lawicel"]),
    st.sampled_from([math.inf, 1000.0]),
    st.data(),
)
def test_slcan_output_does_not_depend_on_how_writes_are_split(session, errors, throughput, data):
    cuts = [data.draw(st.lists(st.integers(0, 200), max_size=6)) for _ in session]

    def make() -> SlcanEmulator:
        return SlcanEmulator(throughput=throughput, queue_size=8, errors=errors)

    whole = play(make(), session, [[] for _ in session])
    split = play(make(), session, cuts)
    assert split == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_hostile_bytes_never_break_either_emulator(chunks):
    adapters = (
        elm(Elm327Quirks(answer_delay=0.01)),
        elm(Elm327Quirks(endless_garbage=True)),
        elm(Elm327Quirks(endless_line=True)),
        elm(Elm327Quirks(flood=500.0)),
        wican(),
        wican(errors="lawicel"),
    )
    for adapter in adapters:
        for step, chunk in enumerate(chunks):
            adapter.write(chunk, step * 0.005)
            adapter.bus_frame(*BATTERY, step * 0.005)
            adapter.read(step * 0.005)
        adapter.read(100.0)
