"""The MQTT bridge against a real mosquitto on 127.0.0.1: discovery, retained values,
the will, a broker restart mid-run, a slow subscriber, and the command's failures.

Every broker is a mosquitto process of the distribution started here on a free port,
without persistence; the bridge runs on asyncio (aiomqtt is asyncio-only).
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

aiomqtt = pytest.importorskip("aiomqtt")

from o2x import O2XVehicle, Timeouts  # noqa: E402
from o2x.mqtt import MqttBridge  # noqa: E402
from o2x.mqtt._aiomqtt import register_writes_in_order  # noqa: E402
from o2x.sdk import from_sdk  # noqa: E402
from o2x.sim import SimulatedVehicle, VirtualRadio  # noqa: E402
from o2x.trips import TripTracker  # noqa: E402

VIN = "VR1AB12C3D4567890"
BASE = f"o2x/{VIN}"
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)

pytestmark = [
    pytest.mark.skipif(
        MOSQUITTO is None,
        reason="mosquitto is not installed (apt-get install mosquitto; .ci/run does it)",
    ),
    pytest.mark.anyio,
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the bridge is asyncio-only, as aiomqtt is


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """A mosquitto process on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(
        self,
        directory: Path,
        *,
        password_file: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """``extra``: more lines of mosquitto.conf(5), after the listener's."""
        self.port = _free_port()
        self.config = directory / f"mosquitto-{self.port}.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
        ]
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        lines += extra
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[str] | None = None
        self._drain = threading.Thread()

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Ready when it says so: it logs "... running" once it listens (on stderr,
        # which it does not buffer); the rest of its log is drained by a thread.
        log = self.process.stderr
        assert log is not None
        for line in log:
            if " running" in line:
                self._drain = threading.Thread(target=log.read, daemon=True)
                self._drain.start()
                return
            if "Error" in line:
                raise RuntimeError(f"mosquitto did not start: {line}")
        raise RuntimeError("mosquitto ended before it ran")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self._drain.join(10)
            assert self.process.stderr is not None
            self.process.stderr.close()
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path)
    running.start()
    yield running
    running.stop()


@asynccontextmanager
async def subscriber(port: int, *topics: str) -> AsyncIterator[Any]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=None) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        yield client


async def collect(client: Any, wanted: set[str]) -> dict[str, Any]:
    """The last message of each topic until every topic of ``wanted`` has one."""
    seen: dict[str, Any] = {}
    async for message in client.messages:
        seen[str(message.topic)] = message
        if wanted <= seen.keys():
            return seen
    raise AssertionError("the subscription ended")


@asynccontextmanager
async def simulated_bridge(
    port: int, **options: Any
) -> AsyncIterator[tuple[O2XVehicle, MqttBridge, anyio.abc.TaskGroup]]:
    async with VirtualRadio() as radio:
        await radio.add(SimulatedVehicle(VIN, autopilot=True, time_scale=300))
        car = O2XVehicle.first_time(VIN, radio=radio, timeouts=Timeouts(scan=20))
        async with car, MqttBridge(car, interval=0.2, **options) as bridge:
            client = aiomqtt.Client("127.0.0.1", port, will=bridge.will)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: bridge.serve(client, backoff=0.05, max_backoff=0.2))
                yield car, bridge, tasks
                tasks.cancel_scope.cancel()


STATE_KEYS = {"vin", "currentAlert", "previousAlert", "data", "receivedAt", "status"}


async def test_discovery_and_retained_values(broker: Broker) -> None:
    async with simulated_bridge(broker.port) as (car, _, _):
        wanted = {
            f"{BASE}/availability",
            f"{BASE}/status",
            f"{BASE}/state",
            f"{BASE}/evcc/soc",
            f"{BASE}/evcc/range",
            f"{BASE}/evcc/odometer",
            f"{BASE}/evcc/status",
            f"homeassistant/sensor/o2x_{VIN}/battery_soc/config",
            f"homeassistant/binary_sensor/o2x_{VIN}/connectivity/config",
        }
        with anyio.fail_after(30):
            async with subscriber(broker.port, "o2x/#", "homeassistant/#") as client:
                await collect(client, wanted)
            # Everything published: a subscriber arriving now gets it all, retained.
            async with subscriber(broker.port, "o2x/#", "homeassistant/#") as client:
                seen = await collect(client, wanted)
        assert seen[f"{BASE}/availability"].payload == b"online"
        assert seen[f"{BASE}/status"].payload.decode() in {"parked", "driving", "charging"}
        state = json.loads(seen[f"{BASE}/state"].payload)
        assert set(state) == STATE_KEYS | {"live", "connected"}
        assert state["live"] is None  # the O2X dongle gives nothing beyond the SDK's shape
        assert state["connected"] is True
        info = from_sdk({key: state[key] for key in STATE_KEYS})
        assert info.vin == VIN
        soc = float(seen[f"{BASE}/evcc/soc"].payload)
        assert 0 <= soc <= 100
        int(seen[f"{BASE}/evcc/range"].payload)  # evcc reads the range as an integer
        float(seen[f"{BASE}/evcc/odometer"].payload)
        assert seen[f"{BASE}/evcc/status"].payload.decode() in {"A", "B", "C"}
        config = json.loads(seen[f"homeassistant/sensor/o2x_{VIN}/battery_soc/config"].payload)
        assert config["unique_id"] == f"o2x_{VIN}_battery_soc"
        assert config["device"]["identifiers"] == [f"o2x_{VIN}", VIN]
        assert config["availability_topic"] == f"{BASE}/availability"
        assert (config["device_class"], config["unit_of_measurement"]) == ("battery", "%")
        assert config["state_topic"] == f"{BASE}/state"
        link = json.loads(
            seen[f"homeassistant/binary_sensor/o2x_{VIN}/connectivity/config"].payload
        )
        assert link["device_class"] == "connectivity"
        assert all(seen[topic].retain for topic in wanted)
        assert car.stats.samples_dropped == 0


async def test_no_discovery_and_another_prefix(broker: Broker) -> None:
    async with simulated_bridge(broker.port, discovery=False, topic_prefix="home/cars"):
        with anyio.fail_after(30):
            async with subscriber(broker.port, "#") as client:
                seen = await collect(client, {f"home/cars/{VIN}/state"})
    assert not any(topic.startswith("homeassistant/") for topic in seen)


async def test_a_broker_restart_gets_the_latest_state_and_the_retained_values(
    broker: Broker,
) -> None:
    async with simulated_bridge(broker.port) as (car, _, _):
        with anyio.fail_after(30):
            async with subscriber(broker.port, f"{BASE}/state") as client:
                await collect(client, {f"{BASE}/state"})
        broker.stop()
        # The vehicle's side goes on while the broker is away.
        before = car.latest
        with anyio.fail_after(30):
            async with car.samples(buffer=1) as samples:
                async for info in samples:
                    if before is None or info.received_at > before.received_at:
                        break
        latest_while_down = car.latest
        assert latest_while_down is not None
        broker.start()  # without persistence: it has forgotten every retained value
        with anyio.fail_after(30):
            async with subscriber(broker.port, "o2x/#", "homeassistant/#") as client:
                seen = await collect(
                    client,
                    {
                        f"{BASE}/availability",
                        f"{BASE}/status",
                        f"{BASE}/state",
                        f"{BASE}/evcc/soc",
                        f"homeassistant/sensor/o2x_{VIN}/odometer/config",
                    },
                )
                state = json.loads(seen[f"{BASE}/state"].payload)
                # The latest state, not a backlog of what happened while it was away.
                assert state["receivedAt"] >= latest_while_down.received_at.strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
        assert seen[f"{BASE}/availability"].payload == b"online"


#: mosquitto's count (2.0: retained, updated every ``sys_interval``) of the messages it
#: dropped for a client whose queue was full.
DROPPED = "$SYS/broker/publish/messages/dropped"


async def test_a_slow_subscriber_does_not_hold_the_bridge_back(tmp_path: Path) -> None:
    # mosquitto.conf(5): per client, 1 QoS 1 or 2 message in flight (unacknowledged) and
    # 10 queued behind it; beyond that the broker drops them and counts them in $SYS.
    # (mosquitto 2.0.11 counts only those: QoS 0 ones, the state, go to the socket.)
    broker = Broker(
        tmp_path,
        extra=["max_inflight_messages 1", "max_queued_messages 10", "sys_interval 1"],
    )
    broker.start()
    try:
        # A subscriber that connects, subscribes to everything with QoS 1, then never
        # reads nor acknowledges anything: its queue at the broker fills with the bridge's
        # QoS 1 messages and stays full (the discovery configs and online are 12 already,
        # then come the status and the evcc values, again whenever they change).
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as stalled:

            def receive(size: int) -> bytes:
                data = b""
                while len(data) < size:
                    chunk = stalled.recv(size - len(data))
                    assert chunk, "the broker closed the stalled subscriber's connection"
                    data += chunk
                return data

            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client_id = b"stalled"
            connect = (
                b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
            )
            stalled.sendall(b"\x10" + bytes([len(connect)]) + connect)
            assert receive(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
            topic = b"#"
            subscribe = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x01"
            stalled.sendall(b"\x82" + bytes([len(subscribe)]) + subscribe)
            assert receive(5) == b"\x90\x03\x00\x01\x01"  # SUBACK, QoS 1 granted
            async with subscriber(broker.port, DROPPED) as broker_stats:

                async def dropped_beyond(count: int) -> int:
                    async for message in broker_stats.messages:
                        if int(message.payload) > count:
                            return int(message.payload)
                    raise AssertionError("the subscription ended")

                with anyio.fail_after(10):
                    assert await dropped_beyond(-1) == 0  # before the bridge: none
                bridge = simulated_bridge(broker.port, tracker=TripTracker(settle=0))
                async with bridge as (car, _, _):
                    with anyio.fail_after(60):
                        # The stalled subscriber's queue is full: the broker says so...
                        overflowed = await dropped_beyond(0)
                        async with subscriber(broker.port, f"{BASE}/state") as client:
                            times = []
                            async for message in client.messages:
                                times.append(json.loads(message.payload)["receivedAt"])
                                if len(times) == 40:
                                    break
                        # ...and went on dropping what the bridge published meanwhile.
                        still = await dropped_beyond(overflowed)
    finally:
        broker.stop()
    assert 0 < overflowed < still
    assert times == sorted(times)
    assert car.stats.samples_dropped == 0


# --- the command ------------------------------------------------------------------------


def _command(port: int, *extra: str, scheme: str = "mqtt") -> subprocess.Popen[str]:
    env = dict(os.environ, O2X_STATE_DIR=os.environ.get("O2X_STATE_DIR", "/tmp/o2x-test-state"))
    env.pop("O2X_MQTT_PASSWORD", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "o2x",
            "mqtt",
            "--simulate",
            VIN,
            "--broker",
            f"{scheme}://127.0.0.1:{port}",
            "--sim-speed",
            "300",
            "--interval",
            "0.2",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def _wait_online(port: int) -> None:
    with anyio.fail_after(60):
        async with subscriber(port, f"{BASE}/availability") as client:
            async for message in client.messages:
                if message.payload == b"online":
                    return


async def _availability(port: int) -> bytes:
    with anyio.fail_after(30):
        async with subscriber(port, f"{BASE}/availability") as client:
            async for message in client.messages:
                assert message.retain
                payload: bytes = message.payload
                return payload
    raise AssertionError("unreachable")


async def test_the_will_says_offline_when_the_bridge_dies(broker: Broker) -> None:
    process = _command(broker.port)
    try:
        await _wait_online(broker.port)
        process.kill()  # no goodbye: the broker publishes the will
        process.wait(10)
        with anyio.fail_after(30):
            async with subscriber(broker.port, f"{BASE}/availability") as client:
                async for message in client.messages:
                    if message.payload == b"offline":
                        break
        assert await _availability(broker.port) == b"offline"
    finally:
        process.kill()
        process.communicate()


async def test_ctrl_c_publishes_offline_and_exits_130(broker: Broker) -> None:
    process = _command(broker.port)
    try:
        await _wait_online(broker.port)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "offline published" in stderr
        assert await _availability(broker.port) == b"offline"
    finally:
        process.kill()


async def test_an_unreachable_broker_is_one_line_and_retried(tmp_path: Path) -> None:
    later = Broker(tmp_path)  # its port is free: nobody listens yet
    process = _command(later.port)
    try:
        assert process.stderr is not None
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(
                lambda: next(ln for ln in process.stderr if "Cannot reach" in ln)  # type: ignore[union-attr]
            )
        assert "trying again" in line
        assert "Traceback" not in line
        later.start()
        try:
            await _wait_online(later.port)
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
            later.stop()
        assert process.returncode == 130
    finally:
        process.kill()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory mosquitto can read when run as root (it reads its files as the user
    mosquitto then, and pytest's tmp_path has private parents)."""
    shared = Path(tempfile.mkdtemp(prefix="o2x-mqtt-"))
    shared.chmod(0o755)
    yield shared
    shutil.rmtree(shared)


@pytest.fixture
def passwords(shared_dir: Path) -> Path:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with mosquitto)")
    path = shared_dir / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), "ami", "right"], check=True)
    path.chmod(0o644)
    return path


@pytest.fixture
def certificate(shared_dir: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    cert, key = shared_dir / "broker.pem", shared_dir / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o644)
    return cert, key


async def test_bad_credentials_are_one_line_and_exit_8(tmp_path: Path, passwords: Path) -> None:
    guarded = Broker(tmp_path, password_file=passwords)
    guarded.start()
    secret = tmp_path / "secret"
    secret.write_text("wrong\n")
    try:
        process = _command(guarded.port, "--username", "ami", "--password-file", str(secret))
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 8, stderr
        assert "refused" in stderr
        assert "Traceback" not in stderr
        assert len(stderr.strip().splitlines()[-1]) > 0
        good = tmp_path / "good"
        good.write_text("right\n")
        process = _command(guarded.port, "--username", "ami", "--password-file", str(good))
        try:
            await _wait_with_credentials(guarded.port)
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
        assert process.returncode == 130
    finally:
        guarded.stop()


async def _wait_with_credentials(port: int) -> None:
    with anyio.fail_after(60):
        async with aiomqtt.Client("127.0.0.1", port, username="ami", password="right") as client:
            await client.subscribe(f"{BASE}/availability")
            async for message in client.messages:
                if message.payload == b"online":
                    return


async def test_tls_an_unknown_certificate_is_exit_9_and_the_right_ca_works(
    shared_dir: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    secure = Broker(shared_dir)
    with secure.config.open("a") as config:
        config.write(f"certfile {cert}\nkeyfile {key}\n")
    secure.start()
    try:
        process = _command(secure.port, scheme="mqtts")
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 9, stderr
        assert "TLS" in stderr
        assert "Traceback" not in stderr
        process = _command(secure.port, "--ca-file", str(cert), scheme="mqtts")
        try:
            assert process.stderr is not None
            with anyio.fail_after(60):
                line = await anyio.to_thread.run_sync(
                    lambda: next(ln for ln in process.stderr if "connected;" in ln)  # type: ignore[union-attr]
                )
            assert "mqtts://" in line
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
        assert process.returncode == 130
    finally:
        secure.stop()


def test_a_password_on_the_command_line_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "o2x", "mqtt", VIN, "--broker", "mqtt://u:p@localhost"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--password-file" in result.stderr


# --- aiomqtt's socket callbacks -------------------------------------------------------------


async def test_the_aiomqtt_workaround_applies_to_this_aiomqtt() -> None:
    # o2x.mqtt._aiomqtt patches private attributes: an aiomqtt that moved them would
    # leave reconnections exposed to the race it works around (see that module), and
    # the broker-restart test above only catches it about one run in three.
    client = aiomqtt.Client("127.0.0.1", _free_port())
    assert register_writes_in_order(client)
    assert client._client.on_socket_register_write.__module__ == "o2x.mqtt._aiomqtt"


async def test_a_writer_is_added_only_while_paho_wants_it(broker: Broker) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        assert register_writes_in_order(client)
        paho = client._client
        sock = paho.socket()
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]

        def watched_for_writing() -> bool:
            try:
                key = selector.get_key(sock.fileno())
            except KeyError:
                return False
            return bool(key.events & selectors.EVENT_WRITE)

        # What paho does when it writes everything at once (a CONNACK that sends the
        # unacknowledged messages again): register, then unregister, in one go.
        paho.on_socket_register_write(paho, None, sock)
        paho.on_socket_unregister_write(paho, None, sock)
        await asyncio.sleep(0)  # the deferred addition runs
        await asyncio.sleep(0)
        assert not watched_for_writing()  # aiomqtt's own callback leaves it watched
        # And a payload too big for the socket's buffer still goes out: the writer is
        # added when paho wants it.
        async with subscriber(broker.port, "big") as reader:
            payload = os.urandom(4 * 1024 * 1024)
            await client.publish("big", payload, qos=1)
            with anyio.fail_after(30):
                async for message in reader.messages:
                    assert message.payload == payload
                    break
