"""``TcpTransport`` (``edge.drivers.modbus_tcp``) against the real simulator and a scripted misbehaving converter.

Loopback only, every wait bounded. The real simulator (``firmware_sim.modbus_server.GatewayServer``, pymodbus)
runs on its own event loop in a background thread. The misbehaving converter is a plain socket server whose
connection ``i`` is served by the test's ``i``-th script; it records every request frame it receives, so each
test also checks that what the transport sent is a well-formed MBAP + FC 04 request.
"""

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from edge.config import ModbusConfig, SensorConfig
from edge.drivers import bus, modbus
from edge.drivers.modbus import ModbusDriver, Take
from edge.drivers.modbus_tcp import MAX_REGISTERS, MAX_SILENT_TIMEOUTS, TcpTransport
from edge.drivers.transport import BusDown, NoAnswer, Transport
from edge.outbox import Cursor
from firmware_sim.modbus_server import GatewayServer
from hub.demo.processes import free_port
from protocol.registers import (
    HEADER_ADDRESS,
    HEADER_COUNT,
    KIND_CODES,
    KIND_EXPONENTS,
    RING_ADDRESS,
    RING_CAPACITY,
    RING_COUNT,
    Header,
    Sample,
    Status,
    decode_ring_bytes,
    encode_header,
    encode_sample,
    ring_slot,
)

T = TypeVar("T")
WAIT_S = 3.0
"""Upper bound of every wait in the scripted converter and the simulator's thread."""
SHORT_S = 0.25
"""The transport's timeout where a test makes it time out."""
T0_MS = 1_750_000_000_000


def _bytes(words: list[int]) -> bytes:
    return struct.pack(f">{len(words)}H", *words)


def _header(counter: int) -> Header:
    return Header(KIND_CODES["gas"], Status.NORMAL, 87, -61, KIND_EXPONENTS["gas"], RING_CAPACITY, counter)


# -- the real simulator in a thread ------------------------------------------------------------------------------


class Gateway:
    """A ``GatewayServer`` on its own event loop in a background thread; ``stop`` and ``start`` keep the port."""

    def __init__(self, unit_ids: tuple[int, ...]) -> None:
        self.port = free_port()
        self.server = GatewayServer(gateway_id="gw-tcp", port=self.port, unit_ids=unit_ids)
        self.running = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gateway-sim", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT_S)

    def start(self) -> None:
        self.run(self.server.__aenter__())
        self.running = True

    def stop(self) -> None:
        self.running = False
        self.run(self.server.__aexit__(None, None, None))

    def close(self) -> None:
        if self.running:
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT_S)
        self._loop.close()


@pytest.fixture
def transports() -> Iterator[Callable[..., TcpTransport]]:
    made: list[TcpTransport] = []

    def make(port: int, timeout_s: float = 1.0) -> TcpTransport:
        transport = TcpTransport(host="127.0.0.1", port=port, timeout_s=timeout_s)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection opened during the test (the transport opens its connection with this call)."""
    opened: list[tuple[str, int]] = []
    real = socket.create_connection

    def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


def test_reads_header_and_ring_exactly_as_the_simulator_holds_them(
    gateway: Callable[[tuple[int, ...]], Gateway], transports: Callable[..., TcpTransport]
) -> None:
    gw = gateway((1, 2))
    rings = {1: [0] * RING_COUNT, 2: [0] * RING_COUNT}
    samples: dict[int, list[Sample]] = {1: [], 2: []}
    for unit_id, produced in ((1, RING_CAPACITY + 4), (2, 3)):  # unit 1's ring has wrapped around
        for seq in range(1, produced + 1):
            sample = Sample(seq, T0_MS + 1_000 * seq + unit_id, (-1) ** seq * (300 * seq + unit_id))
            gw.run(gw.server.publish(unit_id, sample, _header(seq)))
            start = ring_slot(seq) - RING_ADDRESS
            rings[unit_id][start : start + 8] = encode_sample(sample)
            samples[unit_id].append(sample)
    transport = transports(gw.port)
    for unit_id in (1, 2):
        header = transport.read_input_registers(unit_id, HEADER_ADDRESS, HEADER_COUNT)
        assert header == _bytes(encode_header(_header(len(samples[unit_id]))))
        ring = transport.read_input_registers(unit_id, RING_ADDRESS, RING_COUNT)
        assert len(ring) == 2 * RING_COUNT
        assert ring == _bytes(rings[unit_id])
        assert decode_ring_bytes(ring) == samples[unit_id][-RING_CAPACITY:]  # negative raws survive the wire


def test_muted_and_missing_units_are_no_answer_on_the_same_connection(
    gateway: Callable[[tuple[int, ...]], Gateway],
    transports: Callable[..., TcpTransport],
    connects: list[tuple[str, int]],
) -> None:
    gw = gateway((1, 2, 3))
    gw.run(gw.server.set_header(3, _header(7)))
    gw.server.mute({2})
    transport = transports(gw.port)
    assert len(transport.read_input_registers(1, RING_ADDRESS, RING_COUNT)) == 2 * RING_COUNT
    with pytest.raises(NoAnswer) as muted:
        transport.read_input_registers(2, RING_ADDRESS, RING_COUNT)
    assert muted.value.unit_id == 2
    assert "exception 0x0b (gateway target device failed to respond)" in muted.value.reason
    assert transport.read_input_registers(3, HEADER_ADDRESS, HEADER_COUNT) == _bytes(encode_header(_header(7)))
    with pytest.raises(NoAnswer) as missing:
        transport.read_input_registers(99, RING_ADDRESS, RING_COUNT)  # no detector has unit id 99
    assert missing.value.unit_id == 99 and "0x0b" in missing.value.reason
    gw.server.mute(set())
    assert len(transport.read_input_registers(2, RING_ADDRESS, RING_COUNT)) == 2 * RING_COUNT
    assert connects == [("127.0.0.1", gw.port)]  # exception responses never cost the connection


# -- a scripted misbehaving converter ----------------------------------------------------------------------------

_REQUEST = struct.Struct(">HHHBBHH")


@dataclass(frozen=True, slots=True)
class Request:
    tid: int
    protocol: int
    length: int
    unit_id: int
    function: int
    address: int
    count: int


def _payload(tid: int, count: int) -> bytes:
    """Register contents that tell answers apart: they depend on the transaction they answer."""
    return _bytes([(tid << 8 | i) & 0xFFFF for i in range(count)])


def _frame(tid: int, unit_id: int, pdu: bytes, *, protocol: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", tid, protocol, 1 + len(pdu) if length is None else length, unit_id) + pdu


def _answer(request: Request) -> bytes:
    """The well-formed reply to ``request``."""
    data = _payload(request.tid, request.count)
    return _frame(request.tid, request.unit_id, bytes([4, len(data)]) + data)


class Peer:
    """One accepted connection, as a script sees it."""

    def __init__(self, conn: socket.socket, converter: "Converter") -> None:
        conn.settimeout(WAIT_S)
        self._conn = conn
        self._converter = converter

    def request(self) -> Request:
        """The next request frame (12 bytes), recorded."""
        data = b""
        while len(data) < _REQUEST.size:
            chunk = self._conn.recv(_REQUEST.size - len(data))
            if not chunk:
                raise AssertionError(f"client closed the connection after {len(data)} bytes of a request")
            data += chunk
        request = Request(*_REQUEST.unpack(data))
        self._converter.requests.append(request)
        return request

    def send(self, data: bytes) -> None:
        self._conn.sendall(data)

    def expect_close(self) -> None:
        """Record whether the client closes this connection (sending nothing more) within ``WAIT_S``."""
        try:
            closed = self._conn.recv(1) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
        self._converter.closes.append(closed)


Script = Callable[[Peer], None]


class Converter:
    """A Modbus TCP "converter" on 127.0.0.1 that misbehaves as scripted: connection ``i`` runs ``scripts[i]``
    (one connection at a time), then is closed. ``finish`` re-raises what failed in a script."""

    def __init__(self, scripts: tuple[Script, ...]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[Request] = []
        self.closes: list[bool] = []
        self.connections = 0
        self._scripts = scripts
        self._errors: list[Exception] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="converter", daemon=True)
        self._thread.start()

    def _accept(self) -> socket.socket | None:
        deadline = time.monotonic() + 10 * WAIT_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                return self._listener.accept()[0]
            except TimeoutError:
                continue
        return None

    def _serve(self) -> None:
        for script in self._scripts:
            conn = self._accept()
            if conn is None:
                return
            with conn:
                self.connections += 1
                try:
                    script(Peer(conn, self))
                except Exception as exc:  # handed to the test by finish()
                    self._errors.append(exc)
                    return

    def close(self) -> None:
        """Stop accepting and wait (bounded) for the running script."""
        self._stop.set()
        self._thread.join(2 * WAIT_S)
        self._listener.close()

    def finish(self) -> list[Request]:
        """``close``, re-raise what failed in a script, and return every request received."""
        self.close()
        assert not self._thread.is_alive(), "a converter script did not end"
        if self._errors:
            raise self._errors[0]
        return self.requests


@pytest.fixture
def converter() -> Iterator[Callable[..., Converter]]:
    made: list[Converter] = []

    def make(*scripts: Script) -> Converter:
        instance = Converter(scripts)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()


def _well_formed(requests: list[Request], tids: list[int]) -> None:
    """Every request is MBAP (protocol 0, length 6) + FC 04, with transaction ids ``tids`` in order."""
    assert [r.tid for r in requests] == tids
    assert all((r.protocol, r.length, r.function) == (0, 6, 4) for r in requests), requests


def _answers(peer: Peer, n: int = 1) -> None:
    for _ in range(n):
        peer.send(_answer(peer.request()))


def test_request_frames_and_a_reply_in_pieces(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport]
) -> None:
    def dribble(peer: Peer) -> None:
        for _ in range(2):
            reply = _answer(peer.request())
            for piece in (reply[:3], reply[3:8], reply[8:100], reply[100:]):  # cut inside MBAP, PDU and data
                peer.send(piece)
                time.sleep(0.02)

    server = converter(dribble)
    transport = transports(server.port)
    assert transport.read_input_registers(7, RING_ADDRESS, MAX_REGISTERS) == _payload(1, MAX_REGISTERS)
    assert transport.read_input_registers(247, 0, 60) == _payload(2, 60)
    assert server.finish() == [Request(1, 0, 6, 7, 4, RING_ADDRESS, MAX_REGISTERS), Request(2, 0, 6, 247, 4, 0, 60)]


def test_a_late_reply_is_skipped_as_stale(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport]
) -> None:
    late_sent = threading.Event()

    def late(peer: Peer) -> None:
        first = peer.request()
        second = peer.request()  # sent only after the first timed out
        peer.send(_answer(first) + _answer(second))  # both in order, in one segment
        third = peer.request()
        time.sleep(SHORT_S + 0.1)  # beyond the timeout: arrives while the transport is idle
        peer.send(_answer(third))
        late_sent.set()
        _answers(peer, 2)

    server = converter(late)
    transport = transports(server.port, timeout_s=SHORT_S)
    with pytest.raises(NoAnswer, match="no reply within"):
        transport.read_input_registers(1, 16, 10)
    assert transport.read_input_registers(2, 16, 20) == _payload(2, 20)
    with pytest.raises(NoAnswer, match="no reply within"):
        transport.read_input_registers(3, 16, 30)
    assert late_sent.wait(WAIT_S)
    assert transport.read_input_registers(4, 16, 40) == _payload(4, 40)  # reply 3 was waiting in the socket
    assert transport.read_input_registers(5, 16, 50) == _payload(5, 50)
    _well_formed(server.finish(), [1, 2, 3, 4, 5])
    assert server.connections == 1


def test_a_reply_to_a_transaction_never_sent_is_bus_down(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport]
) -> None:
    def future(peer: Peer) -> None:
        request = peer.request()
        peer.send(_answer(Request(request.tid + 1, 0, 6, request.unit_id, 4, request.address, request.count)))
        peer.expect_close()

    server = converter(future, _answers)
    transport = transports(server.port)
    with pytest.raises(BusDown, match="answered transaction 2 while 1 was outstanding"):
        transport.read_input_registers(1, 16, 8)
    assert transport.read_input_registers(1, 16, 8) == _payload(2, 8)  # on a new connection
    _well_formed(server.finish(), [1, 2])
    assert server.closes == [True] and server.connections == 2


@pytest.mark.parametrize(
    ("protocol", "length"),
    [(1, None), (0, 0), (0, 1), (0, 255), (0, 0xFFFF)],
    ids=["protocol-1", "length-0", "length-1", "length-255", "length-65535"],
)
def test_a_bad_mbap_header_is_bus_down(
    converter: Callable[..., Converter],
    transports: Callable[..., TcpTransport],
    protocol: int,
    length: int | None,
) -> None:
    def bad(peer: Peer) -> None:
        request = peer.request()
        data = _payload(request.tid, request.count)
        peer.send(_frame(request.tid, request.unit_id, bytes([4, len(data)]) + data, protocol=protocol, length=length))
        peer.expect_close()

    server = converter(bad, _answers)
    transport = transports(server.port, timeout_s=2.0)
    began = time.monotonic()
    with pytest.raises(BusDown, match=rf"bad MBAP header \(protocol {protocol}, length "):
        transport.read_input_registers(1, 16, 8)
    assert time.monotonic() - began < 1.0  # refused on the header, not after waiting for a body
    assert transport.read_input_registers(1, 16, 8) == _payload(2, 8)
    _well_formed(server.finish(), [1, 2])
    assert server.closes == [True] and server.connections == 2


def test_a_closed_connection_is_bus_down_and_the_next_read_reconnects(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport]
) -> None:
    def answer_once_then_hang_up(peer: Peer) -> None:
        _answers(peer)
        peer.request()

    server = converter(answer_once_then_hang_up, _answers)
    transport = transports(server.port)
    assert transport.read_input_registers(1, 16, 8) == _payload(1, 8)
    with pytest.raises(BusDown, match=rf"Modbus TCP 127\.0\.0\.1:{server.port} closed the connection"):
        transport.read_input_registers(2, 16, 8)
    assert transport.read_input_registers(2, 16, 8) == _payload(3, 8)
    _well_formed(server.finish(), [1, 2, 3])
    assert server.connections == 2


def test_timeouts_in_a_row_reconnect_and_stay_per_unit(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport]
) -> None:
    def silent(peer: Peer) -> None:
        for _ in range(MAX_SILENT_TIMEOUTS - 1):
            peer.request()
        _answers(peer)  # any frame breaks the row
        for _ in range(MAX_SILENT_TIMEOUTS):
            peer.request()
        peer.expect_close()

    server = converter(silent, _answers)
    transport = transports(server.port, timeout_s=SHORT_S)
    for _ in range(MAX_SILENT_TIMEOUTS - 1):
        with pytest.raises(NoAnswer, match=f"no reply within {SHORT_S} s"):
            transport.read_input_registers(1, 16, 8)
    assert transport.read_input_registers(1, 16, 8) == _payload(MAX_SILENT_TIMEOUTS, 8)
    for _ in range(MAX_SILENT_TIMEOUTS - 1):
        with pytest.raises(NoAnswer, match=f"no reply within {SHORT_S} s"):
            transport.read_input_registers(1, 16, 8)
    with pytest.raises(NoAnswer, match=f"{MAX_SILENT_TIMEOUTS} silent in a row: reconnecting"):
        transport.read_input_registers(1, 16, 8)  # a converter that stays silent for dead detectors: not bus down
    sent = 2 * MAX_SILENT_TIMEOUTS
    assert transport.read_input_registers(1, 16, 8) == _payload(sent + 1, 8)  # on a new connection
    _well_formed(server.finish(), list(range(1, sent + 2)))
    assert server.closes == [True] and server.connections == 2


@pytest.mark.parametrize("cut", [3, 9], ids=["in-mbap", "in-pdu"])
def test_a_reply_cut_off_is_no_answer_and_reconnects(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport], cut: int
) -> None:
    def cut_off(peer: Peer) -> None:
        peer.send(_answer(peer.request())[:cut])
        peer.expect_close()

    server = converter(cut_off, _answers)
    transport = transports(server.port, timeout_s=SHORT_S)
    with pytest.raises(NoAnswer, match="reply cut off") as cut_reply:
        transport.read_input_registers(4, 16, 8)
    assert cut_reply.value.unit_id == 4
    assert transport.read_input_registers(4, 16, 8) == _payload(2, 8)
    _well_formed(server.finish(), [1, 2])
    assert server.closes == [True] and server.connections == 2


def test_a_reply_from_another_unit_is_no_answer(
    converter: Callable[..., Converter], transports: Callable[..., TcpTransport]
) -> None:
    def other_unit(peer: Peer) -> None:
        request = peer.request()
        peer.send(_answer(Request(request.tid, 0, 6, request.unit_id + 1, 4, request.address, request.count)))
        _answers(peer)

    server = converter(other_unit)
    transport = transports(server.port)
    with pytest.raises(NoAnswer, match="reply came from unit 6") as wrong:
        transport.read_input_registers(5, 16, 8)
    assert wrong.value.unit_id == 5
    assert transport.read_input_registers(6, 16, 8) == _payload(2, 8)  # same connection, still in step
    _well_formed(server.finish(), [1, 2])
    assert server.connections == 1


@pytest.mark.parametrize(
    ("pdu", "reason"),
    [
        (lambda data: bytes([4, len(data) - 2]) + data, "malformed reply of 18 bytes"),  # byte count too small
        (lambda data: bytes([4, len(data)]) + data[:-2], "malformed reply of 16 bytes"),  # data short
        (lambda data: bytes([4, len(data)]) + data + b"\0\0", "malformed reply of 20 bytes"),  # data long
        (lambda data: bytes([3, len(data)]) + data, "malformed reply of 18 bytes"),  # holding registers
        (lambda data: bytes([4]), "malformed reply of 1 bytes"),
        (lambda data: bytes([0x84, 2]), r"exception 0x02 \(illegal data address\)"),
        (lambda data: bytes([0x84]), r"exception .* \(unknown\)"),
    ],
    ids=["byte-count", "short", "long", "function-03", "no-byte-count", "exception-02", "exception-no-code"],
)
def test_a_wrong_pdu_is_no_answer(
    converter: Callable[..., Converter],
    transports: Callable[..., TcpTransport],
    pdu: Callable[[bytes], bytes],
    reason: str,
) -> None:
    def wrong(peer: Peer) -> None:
        request = peer.request()
        peer.send(_frame(request.tid, request.unit_id, pdu(_payload(request.tid, request.count))))
        _answers(peer)

    server = converter(wrong)
    transport = transports(server.port)
    with pytest.raises(NoAnswer, match=reason) as bad:
        transport.read_input_registers(3, 16, 8)
    assert bad.value.unit_id == 3
    assert transport.read_input_registers(3, 16, 8) == _payload(2, 8)  # same connection, still in step
    _well_formed(server.finish(), [1, 2])
    assert server.connections == 1


def test_connect_refused_is_bus_down_naming_the_endpoint(transports: Callable[..., TcpTransport]) -> None:
    port = free_port()  # nothing listens there
    transport = transports(port)
    for _ in range(2):
        with pytest.raises(BusDown, match=rf"cannot connect to Modbus TCP 127\.0\.0\.1:{port}"):
            transport.read_input_registers(1, 16, 8)


@pytest.mark.parametrize("count", [0, MAX_REGISTERS + 1])
def test_a_count_outside_one_request_is_a_programmer_error(transports: Callable[..., TcpTransport], count: int) -> None:
    transport = transports(free_port())  # a refused port: a ValueError proves nothing was attempted
    with pytest.raises(ValueError, match=f"count {count} outside 1..{MAX_REGISTERS}"):
        transport.read_input_registers(1, 16, count)


# -- the driver over the real simulator ---------------------------------------------------------------------------


class Tripwire:
    """The driver's real transport, which stops the simulator just before reading unit ``stop_before``."""

    def __init__(self, inner: Transport, gw: Gateway) -> None:
        self._inner = inner
        self._gw = gw
        self.stop_before: int | None = None

    def read_input_registers(self, unit_id: int, address: int, count: int) -> bytes:
        if unit_id == self.stop_before:
            self.stop_before = None
            self._gw.stop()
        return self._inner.read_input_registers(unit_id, address, count)

    def close(self) -> None:
        self._inner.close()


def test_driver_bus_down_mid_round_then_back_on_the_same_port(
    gateway: Callable[[tuple[int, ...]], Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    units = (1, 2, 3, 4)
    sensors = tuple(SensorConfig(f"gas-{u}", "gas", u) for u in units)
    gw = gateway(units)
    produced: dict[int, list[Sample]] = {u: [] for u in units}  # each detector's ring outlives the converter
    wires: list[Tripwire] = []

    def open_with_tripwire(config: ModbusConfig, *rest: Any) -> Transport:
        transport = bus.open_transport(config, *rest)
        assert isinstance(transport, TcpTransport)
        wires.append(Tripwire(transport, gw))
        return wires[-1]

    def produce(n: int) -> None:
        for unit_id in units:
            for _ in range(n):
                seq = len(produced[unit_id]) + 1
                sample = Sample(seq, T0_MS + 1_000 * seq + unit_id, 10 * unit_id + seq)
                produced[unit_id].append(sample)
                if gw.running:
                    gw.run(gw.server.publish(unit_id, sample, _header(seq)))

    monkeypatch.setattr(modbus, "open_transport", open_with_tripwire)

    async def run() -> tuple[list[tuple[str, int]], ModbusDriver]:
        taken: list[tuple[str, int]] = []
        cursors: dict[str, Cursor] = {}

        async def poll() -> list[Take]:
            takes = await driver.poll(cursors)
            for take in takes:
                cursors[take.sensor.id] = take.cursor
                taken.extend((r.sensor, r.time_ms) for r in take.readings)
            return takes

        async with ModbusDriver(config=ModbusConfig(port=gw.port, timeout_s=0.5), sensors=sensors) as driver:
            produce(3)
            assert [t.sensor.unit_id for t in await poll()] == [1, 2, 3, 4]
            produce(2)
            wires[0].stop_before = 3
            assert [t.sensor.unit_id for t in await poll()] == [1, 2]
            assert driver.unanswered == {"gas-1": 0, "gas-2": 0, "gas-3": 1, "gas-4": 1}
            assert driver.requests == 4 + 3  # the round ended at unit 3: unit 4 was not asked
            assert sorted(driver.silent()) == ["gas-3", "gas-4"]
            produce(2)  # the detectors keep sampling while their converter is down
            assert await poll() == []
            assert driver.unanswered == {"gas-1": 1, "gas-2": 1, "gas-3": 2, "gas-4": 2}
            assert driver.requests == 4 + 3 + 1  # refused at the first detector
            gw.start()  # the converter is back on the same port, serving the rings the detectors kept
            for unit_id in units:
                for sample in produced[unit_id]:
                    gw.run(gw.server.publish(unit_id, sample, _header(sample.seq)))
            assert [t.sensor.unit_id for t in await poll()] == [1, 2, 3, 4]
            assert await poll() == []
            produce(1)
            assert [len(t.readings) for t in await poll()] == [1, 1, 1, 1]
            assert driver.silent() == []
        return taken, driver

    taken, driver = asyncio.run(asyncio.wait_for(run(), 15))
    assert len(wires) == 1
    assert sorted(taken) == sorted((f"gas-{u}", s.time_ms) for u in units for s in produced[u])
    assert len(taken) == len(units) * 8
    assert not any((*driver.missed.values(), *driver.restarts.values(), *driver.garbage.values()))
    assert driver.unanswered == {"gas-1": 1, "gas-2": 1, "gas-3": 2, "gas-4": 2}
