"""faultproxy - a small TCP proxy that injects faults between a client and echod.

Used by tests/e2e/test_faults.py (and usable from any test): it listens on
127.0.0.1 port 0, connects every client it accepts to the target, and forwards
bytes in both directions through a Faults policy per direction:

  slice       write at most this many bytes per send (1: every byte in its own send)
  latency     seconds added to every chunk read, plus a uniform jitter in [0, jitter);
              order is kept (a chunk is never delivered before the one read before it)
  rate        bandwidth cap in bytes per second (0: none)
  stall_after, stall_for
              after stall_after bytes were forwarded, forward nothing (and read
              nothing) for stall_for seconds
  reset_after, reset
              after reset_after bytes were forwarded, send a RST (SO_LINGER 0) to
              the side named by reset ("client" or "server") and close the other
              leg normally (FIN)

Half-closes are forwarded (a FIN read on one leg is a shutdown(SHUT_WR) on the
other), and a reset received on one leg is passed on as a reset on the other.

The proxy runs an asyncio loop on a thread of its own; every leg it opened is
closed by stop().  It records what happened on each connection with
timestamps (time.monotonic()), for tests to assert on: see Conn.events.

Standard library only.
"""

import asyncio
import dataclasses
import random
import socket
import struct
import threading
import time


@dataclasses.dataclass
class Faults:
    slice: int = 0
    slice_gap: float = 0.0  # pause between slices, so the receiver reads them one by one
    latency: float = 0.0
    jitter: float = 0.0
    rate: int = 0
    stall_after: int | None = None
    stall_for: float = 0.0
    reset_after: int | None = None
    reset: str = "server"  # "client" or "server"


class Conn:
    """One proxied connection: its events as (monotonic time, name, detail)."""

    def __init__(self):
        self.events = []
        self.forwarded = {"up": 0, "down": 0}  # up: client -> server

    def note(self, name, detail=None):
        self.events.append((time.monotonic(), name, detail))

    def first(self, name):
        """Time of the first event called name, or None."""
        for t, n, _ in self.events:
            if n == name:
                return t
        return None


def _set_reset_on_close(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Leg:
    """One direction of one connection: reads from src, writes to dst."""

    def __init__(self, proxy, conn, name, reader, writer, faults, legs):
        self.proxy, self.conn, self.name = proxy, conn, name
        self.reader, self.writer, self.faults = reader, writer, faults
        self.legs = legs  # {"client": writer, "server": writer}
        self.queue = asyncio.Queue(maxsize=16)  # bounded: a stall pushes back on the sender
        self.last_due = 0.0
        self.stalled = False

    def _due(self):
        f = self.faults
        due = time.monotonic() + f.latency + (random.uniform(0, f.jitter) if f.jitter else 0)
        self.last_due = max(self.last_due, due)
        return self.last_due

    async def read_side(self):
        src = "client" if self.name == "up" else "server"
        try:
            while True:
                data = await self.reader.read(65536)
                await self.queue.put((self._due(), data))
                if not data:
                    self.conn.note(f"{src}_eof")
                    return
        except (ConnectionResetError, BrokenPipeError) as e:
            self.conn.note(f"{src}_reset", repr(e))
            await self.queue.put((0.0, None))

    async def write_side(self):
        dst = "server" if self.name == "up" else "client"
        while True:
            due, data = await self.queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if data is None:  # the source reset: pass it on
                self.conn.note(f"reset_to_{dst}", "passed on")
                self.proxy._abort(self.legs[dst])
                return
            if not data:
                self._shut_write(dst)
                return
            if not await self._forward(data, dst):
                return

    def _shut_write(self, dst):
        try:
            if self.writer.can_write_eof() and not self.writer.is_closing():
                self.writer.write_eof()
                self.conn.note(f"shut_{dst}")
        except OSError:
            pass

    async def _forward(self, data, dst):
        """Writes data as the faults say; False when the connection was reset."""
        f = self.faults
        step = f.slice or len(data)
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            done = self.conn.forwarded[self.name]
            if f.reset_after is not None and done + len(piece) > f.reset_after:
                piece = piece[:max(0, f.reset_after - done)]
                if piece:
                    await self._write(piece)
                self._inject_reset()
                return False
            if (f.stall_after is not None and not self.stalled
                    and done + len(piece) > f.stall_after):
                head = piece[:max(0, f.stall_after - done)]
                if head:
                    await self._write(head)
                piece = piece[len(head):]
                self.stalled = True
                self.conn.note(f"stall_{self.name}", f.stall_for)
                await asyncio.sleep(f.stall_for)
                self.conn.note(f"stall_{self.name}_end")
            if not await self._write(piece):
                return False
            if f.rate:
                await asyncio.sleep(len(piece) / f.rate)
            elif f.slice_gap:
                await asyncio.sleep(f.slice_gap)
        return True

    async def _write(self, piece):
        try:
            self.writer.write(piece)
            await self.writer.drain()
        except (ConnectionResetError, BrokenPipeError) as e:
            self.conn.note(f"write_{self.name}_failed", repr(e))
            return False
        self.conn.forwarded[self.name] += len(piece)
        return True

    def _inject_reset(self):
        victim = self.faults.reset
        other = "client" if victim == "server" else "server"
        self.conn.note(f"reset_to_{victim}", "injected")
        self.proxy._abort(self.legs[victim])
        # The other leg is closed normally: its peer sees a FIN.
        try:
            self.legs[other].close()
        except OSError:
            pass


class FaultProxy:
    """FaultProxy(("127.0.0.1", port), up=Faults(...), down=Faults(...)).

    Use as a context manager, or call start() and stop().  .port is the
    port clients connect to; .conns the Conn of every accepted client.
    """

    def __init__(self, target, up=None, down=None):
        self.target = target
        self.up, self.down = up or Faults(), down or Faults()
        self.conns = []
        self.port = None
        self._loop = None
        self._thread = None
        self._writers = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout=5.0):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self.port is None:
            raise RuntimeError("fault proxy did not start")

    def stop(self, timeout=5.0):
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("fault proxy did not stop")

    # -- the loop's thread -------------------------------------------------

    def _run(self, ready):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main(ready))
        finally:
            self._loop.close()

    async def _main(self, ready):
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        await self._stop_event.wait()
        server.close()
        for w in self._writers:
            w.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _abort(self, writer):
        _set_reset_on_close(writer)
        writer.transport.abort()

    async def _client(self, c_reader, c_writer):
        conn = Conn()
        self.conns.append(conn)
        conn.note("accepted")
        self._writers.append(c_writer)
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError as e:
            conn.note("connect_failed", repr(e))
            self._abort(c_writer)
            return
        self._writers.append(s_writer)
        for w in (c_writer, s_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        legs = {"client": c_writer, "server": s_writer}
        up = _Leg(self, conn, "up", c_reader, s_writer, self.up, legs)
        down = _Leg(self, conn, "down", s_reader, c_writer, self.down, legs)
        tasks = [asyncio.ensure_future(coro) for coro in
                 (up.read_side(), up.write_side(), down.read_side(), down.write_side())]
        try:
            # Done when both directions have delivered their end (EOF or reset).
            await asyncio.wait([tasks[1], tasks[3]])
        finally:
            for t in tasks:
                t.cancel()
            for w in (c_writer, s_writer):
                w.close()
            conn.note("closed")
