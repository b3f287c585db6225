"""The vehicle machine and BLE OBD adapters: peers that advertise no VIN.

An adapter is connected to learn its car's VIN off the bus (``IdentityRead``); the
rules: the right VIN streams, another car's adapter is left alone for a while, and
an adapter that reads no VIN is trusted only when named, or when it has been the
only adapter in range for the whole survey. Plain numbers as the clock.
"""

from __future__ import annotations

import datetime as dt

from o2x import ConnectionFailed, EventKind, ScanTimeout, VehicleInfo
from o2x.dongle.frames import InfoFrame, decode_frame, encode_info
from o2x.machine import (
    FOREIGN_BACKOFF,
    SURVEY,
    AdvertisementSeen,
    Connect,
    Connected,
    ConnectFailed,
    DeliverEvent,
    DeliverSample,
    Disconnect,
    Fail,
    IdentityRead,
    LinkLost,
    ReadIdentity,
    Ready,
    StartScan,
    State,
    StopScan,
    Subscribe,
    Subscribed,
    Timeouts,
    VehicleMachine,
)

VIN = "VR1AB12C3D4567890"
OTHER_VIN = "VXKUHZKXZL4123456"
ADAPTER = "AA:BB:CC:00:00:0A"
_FRAME = decode_frame(encode_info(seq=0))
assert isinstance(_FRAME, InfoFrame)
PARKED = VehicleInfo.from_frame(
    _FRAME, vin=VIN, received_at=dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
)
ADAPTER_B = "AA:BB:CC:00:00:0B"
DONGLE = "AA:BB:CC:00:00:01"


def machine(*, adapter: str | None = None, scan: float = 60.0) -> VehicleMachine:
    m = VehicleMachine(VIN, first_time=True, timeouts=Timeouts(scan=scan), adapter=adapter)
    assert m.start(0.0) == [StartScan()]
    return m


def connect_to(m: VehicleMachine, address: str, now: float) -> None:
    assert m.handle(AdvertisementSeen(address, None), now) == [StopScan(), Connect(address)]
    assert m.handle(Connected(), now) == [ReadIdentity()]


def test_an_adapter_reading_the_vin_streams_verified() -> None:
    m = machine()
    connect_to(m, ADAPTER, 1.0)
    assert m.handle(IdentityRead(VIN), 2.0) == [Subscribe()]
    assert m.handle(Subscribed(), 2.0) == [Ready(VIN, ADAPTER)]
    assert m.identity_verified
    assert m.state is State.STREAMING


def test_another_cars_adapter_is_left_alone_and_the_scan_goes_on() -> None:
    m = machine(scan=600.0)
    connect_to(m, ADAPTER, 1.0)
    assert m.handle(IdentityRead(OTHER_VIN), 2.0) == [Disconnect(), StartScan()]
    assert m.state is State.SCANNING
    # Seen again soon after: ignored, however often it advertises.
    assert m.handle(AdvertisementSeen(ADAPTER, None), 3.0) == []
    assert m.handle(AdvertisementSeen(ADAPTER, None), 2.0 + FOREIGN_BACKOFF - 1) == []
    # ...but the vehicle's own adapter is still found meanwhile.
    connect_to(m, ADAPTER_B, 4.0)
    assert m.handle(IdentityRead(VIN), 5.0) == [Subscribe()]


def test_a_foreign_adapter_is_tried_again_after_its_back_off() -> None:
    m = machine(scan=600.0)
    connect_to(m, ADAPTER, 1.0)
    m.handle(IdentityRead(OTHER_VIN), 2.0)
    # The car came back within range later (or the adapter moved to this car).
    connect_to(m, ADAPTER, 2.0 + FOREIGN_BACKOFF)


def test_the_scan_timeout_names_the_other_cars_adapters() -> None:
    m = machine(scan=30.0)
    connect_to(m, ADAPTER, 1.0)
    m.handle(IdentityRead(OTHER_VIN), 2.0)
    actions = m.tick(30.0)
    assert actions[0] == StopScan()
    assert isinstance(actions[-1], Fail)
    error = actions[-1].error
    assert isinstance(error, ScanTimeout)  # the vehicle was never found
    assert f"{ADAPTER} reads {OTHER_VIN}" in str(error)


def test_no_vin_is_trusted_once_the_scan_has_run_the_survey_alone() -> None:
    # Each attempt waits a second for a VIN; the scan stops meanwhile, so only the
    # time spent scanning between the attempts counts towards the survey.
    m = machine(scan=600.0)
    now = 0.5
    assert m.handle(AdvertisementSeen(ADAPTER, None), now) == [StopScan(), Connect(ADAPTER)]
    scanned = now
    while True:
        m.handle(Connected(), now)
        now += 1.0  # the VIN wait
        actions = m.handle(IdentityRead(""), now)
        if actions == [Subscribe()]:
            break
        assert actions == [Disconnect(), StartScan()]
        assert scanned < SURVEY
        retry = m.deadline
        assert m.tick(retry) == [StopScan(), Connect(ADAPTER)]
        scanned += retry - now
        now = retry
    assert scanned >= SURVEY
    assert m.handle(Subscribed(), now) == [Ready(VIN, ADAPTER)]
    assert not m.identity_verified


def test_an_early_adapter_without_a_vin_gives_way_to_the_cars_own() -> None:
    # A neighbour's adapter (its bus names no VIN) is found first, at once; the car's
    # own comes into range a little later: the survey has not run, so the first is
    # not taken on trust, and the second, which reads the VIN, is the car's.
    m = machine()
    connect_to(m, ADAPTER_B, 0.1)
    assert m.handle(IdentityRead(""), 5.1) == [Disconnect(), StartScan()]
    connect_to(m, ADAPTER, 5.2)
    assert m.handle(IdentityRead(VIN), 6.0) == [Subscribe()]
    assert m.identity_verified


def test_no_vin_is_refused_when_another_adapter_is_in_range() -> None:
    m = machine(scan=20.0)
    m.handle(AdvertisementSeen(ADAPTER_B, None), 0.2)  # seen first, then connected to
    assert m.handle(Connected(), 0.2) == [ReadIdentity()]
    assert m.handle(IdentityRead(OTHER_VIN), 0.3) == [Disconnect(), StartScan()]
    connect_to(m, ADAPTER, 0.3 + SURVEY)  # found after a survey's worth of scanning
    # ADAPTER_B proved to be another car's: ADAPTER is the only candidate left.
    assert m.handle(IdentityRead(""), SURVEY + 1) == [Subscribe()]


def test_no_vin_with_two_unproven_adapters_is_neither_and_says_how_to_choose() -> None:
    m = machine(scan=20.0)
    assert m.handle(AdvertisementSeen(ADAPTER, None), 0.1) == [StopScan(), Connect(ADAPTER)]
    m.handle(ConnectFailed(ConnectionFailed("busy")), 0.2)
    connect_to(m, ADAPTER_B, 0.3)
    assert m.handle(IdentityRead(""), SURVEY + 1) == [Disconnect(), StartScan()]
    actions = m.tick(20.0)
    error = actions[-1]
    assert isinstance(error, Fail)
    assert isinstance(error.error, ScanTimeout)
    assert "adapter=ADDRESS" in str(error.error)


def test_an_adapter_alone_for_the_survey_that_shows_no_bus_is_never_taken() -> None:
    # Alone in range for the whole survey, but it has shown no frame of a car's bus
    # (unplugged, or a monitor that never ends a line): it may be in no car at all.
    m = machine(scan=SURVEY + 10.0)
    connect_to(m, ADAPTER, SURVEY + 1)
    assert m.handle(IdentityRead("", bus_heard=False), SURVEY + 2) == [
        Disconnect(),
        StartScan(),
    ]
    error = m.tick(SURVEY + 10.0)[-1]
    assert isinstance(error, Fail)
    assert isinstance(error.error, ScanTimeout)
    assert "shows no frame of a car's bus" in str(error.error)
    assert m.vin == VIN
    # The same adapter, showing the bus, would have been taken (the control).
    m = machine(scan=SURVEY + 10.0)
    connect_to(m, ADAPTER, SURVEY + 1)
    assert m.handle(IdentityRead("", bus_heard=True), SURVEY + 2) == [Subscribe()]


def test_a_named_adapter_is_trusted_even_while_its_car_sleeps() -> None:
    # Its bus quiet (the car asleep): the user's word is enough, as for previous().
    m = machine(adapter=ADAPTER)
    connect_to(m, ADAPTER, 0.2)
    assert m.handle(IdentityRead("", bus_heard=False), 0.5) == [Subscribe()]
    assert not m.identity_verified


def test_a_named_adapter_is_trusted_at_once_and_the_others_ignored() -> None:
    m = machine(adapter=ADAPTER)
    assert m.handle(AdvertisementSeen(ADAPTER_B, None), 0.1) == []
    connect_to(m, ADAPTER, 0.2)
    assert m.handle(IdentityRead(""), 0.5) == [Subscribe()]
    assert not m.identity_verified


def test_a_named_adapter_reading_another_vin_is_still_refused() -> None:
    m = machine(adapter=ADAPTER, scan=10.0)
    connect_to(m, ADAPTER, 0.2)
    assert m.handle(IdentityRead(OTHER_VIN), 0.5) == [Disconnect(), StartScan()]
    assert isinstance(m.tick(10.0)[-1], Fail)


def test_after_a_loss_only_the_adapter_that_streamed_is_tried() -> None:
    m = machine()
    connect_to(m, ADAPTER, 1.0)
    m.handle(IdentityRead(VIN), 1.0)
    m.handle(Subscribed(), 1.0)
    actions = m.handle(LinkLost(), 10.0)
    assert actions[-1] == StartScan()
    assert m.state is State.RECONNECTING
    assert m.handle(AdvertisementSeen(ADAPTER_B, None), 11.0) == []
    assert m.handle(AdvertisementSeen(ADAPTER, None), 11.0) == [StopScan(), Connect(ADAPTER)]


def test_an_o2x_dongle_and_an_adapter_in_one_scan() -> None:
    # Whichever dongle the car carries: the dongle advertising the VIN is taken as
    # it comes, like any O2X dongle.
    m = machine()
    connect_to(m, ADAPTER, 1.0)
    m.handle(IdentityRead(OTHER_VIN), 2.0)
    assert m.handle(AdvertisementSeen(DONGLE, VIN), 3.0) == [StopScan(), Connect(DONGLE)]
    m.handle(Connected(), 3.0)
    assert m.handle(IdentityRead(VIN), 3.0) == [Subscribe()]


def test_a_quiet_link_that_is_kept_is_one_disconnected_and_no_reconnection() -> None:
    m = machine()
    connect_to(m, ADAPTER, 0.0)
    m.handle(IdentityRead(VIN), 0.0)
    m.handle(Subscribed(keep_when_quiet=True), 0.0)
    m.reading_received(PARKED, 0.5)
    loose = m.deadline
    assert loose == 0.5 + m.timeouts.loose_connection
    # The car falls asleep: one DISCONNECTED, and the adapter's link is kept.
    assert m.tick(loose) == [DeliverEvent(EventKind.DISCONNECTED)]
    assert m.state is State.STREAMING
    assert m.tick(loose + 60) == []  # nothing more, however long it sleeps
    # It wakes: readings again, counted as a reconnection.
    assert m.reading_received(PARKED, loose + 61) == [DeliverSample(PARKED)]
    assert m.reconnects == 1
    # A real loss of the link meanwhile goes the usual way, without a second event.
    m.tick(loose + 61 + m.timeouts.loose_connection)
    actions = m.handle(LinkLost(), loose + 100)
    assert DeliverEvent(EventKind.DISCONNECTED) not in actions
    assert actions[-1] == StartScan()
