#!/usr/bin/env python3
"""A TCP proxy that adds a propagation delay: latency emulation where the kernel has no netem.

    Tools/delay-proxy.py --listen HOST:PORT --to HOST:PORT --delay-ms N

Every chunk read from either side is written to the other side N ms after it arrived
(scheduled with loop.call_at at arrival + N), so the delay is a propagation delay, not a
bandwidth cap: while a chunk waits, later chunks keep being read and are scheduled behind it,
as on a long link. Run it in the receiver's namespace in front of the receiver and point the
sender at it: the round trip grows by 2 x N. TLS passes through unchanged (bytes are not
looked at), so the certificate must name the address the sender dials (the proxy's host).

Backpressure: a side is not read while more than MAX_INFLIGHT bytes wait for their time or
while the other side's socket buffer is over its high-water mark (drain). A half-close (EOF)
is forwarded after the same delay. Prints one line once it listens (with the real port when
PORT is 0); SIGTERM or SIGINT closes the listener and every connection and exits 0.
Python 3 standard library only.
"""
import argparse
import asyncio
import collections
import signal
import socket
import sys

CHUNK = 1 << 20          # bytes per read: large reads keep the per-chunk overhead low
MAX_INFLIGHT = 8 << 20   # bytes scheduled but not yet written, per direction


def endpoint(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT")
    return host.strip("[]"), int(port)


def delay(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 60000:
        raise argparse.ArgumentTypeError(f"'{text}' is not a delay in ms between 0 and 60000")
    return value


class Direction:
    """One way of one connection: reads from `reader`, writes each chunk to `writer` after the delay."""

    def __init__(self, loop, reader, writer, seconds):
        self.loop, self.reader, self.writer, self.seconds = loop, reader, writer, seconds
        self.pending = collections.deque()  # chunks in arrival order (None: EOF)
        self.inflight = 0
        self.room = asyncio.Event()
        self.room.set()
        self.failed = False

    def _due(self):
        # One callback per chunk, due times never decrease: the oldest chunk is always due.
        chunk = self.pending.popleft()
        try:
            if chunk is None:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                else:
                    self.writer.close()
                return
            self.inflight -= len(chunk)
            if self.inflight <= MAX_INFLIGHT:
                self.room.set()
            if not self.writer.is_closing():
                self.writer.write(chunk)
        except (ConnectionError, OSError, RuntimeError):
            self.failed = True
            self.room.set()

    async def run(self):
        while True:
            chunk = await self.reader.read(CHUNK)
            arrived = self.loop.time()
            self.pending.append(chunk or None)
            self.loop.call_at(arrived + self.seconds, self._due)
            if not chunk:
                # Wait until the EOF went out, so the connection is not closed under it.
                await asyncio.sleep(self.seconds)
                return
            self.inflight += len(chunk)
            if self.inflight > MAX_INFLIGHT:
                self.room.clear()
                await self.room.wait()
            if self.failed:
                raise ConnectionResetError("write to the other side failed")
            await self.writer.drain()


class Proxy:
    def __init__(self, target, seconds):
        self.target, self.seconds = target, seconds
        self.connections = set()

    async def handle(self, client_reader, client_writer):
        task = asyncio.current_task()
        self.connections.add(task)
        server_writer = None
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target, limit=2 * CHUNK)
            loop = asyncio.get_running_loop()
            ways = [Direction(loop, client_reader, server_writer, self.seconds),
                    Direction(loop, server_reader, client_writer, self.seconds)]
            await asyncio.gather(*(way.run() for way in ways))
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.close()
            self.connections.discard(task)


async def main(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    proxy = Proxy(args.to, args.delay_ms / 1000)
    try:
        server = await asyncio.start_server(proxy.handle, *args.listen, limit=2 * CHUNK, reuse_address=True)
    except OSError as error:
        print(f"delay-proxy: cannot listen on {args.listen[0]}:{args.listen[1]}: {error.strerror}", file=sys.stderr)
        return 1
    port = server.sockets[0].getsockname()[1]
    print(f"delay-proxy: listening on {args.listen[0]}:{port}, forwarding to {args.to[0]}:{args.to[1]} "
          f"after {args.delay_ms:g} ms each way", flush=True)
    await stop.wait()
    server.close()
    for task in list(proxy.connections):
        task.cancel()
    await asyncio.gather(*proxy.connections, return_exceptions=True)
    await server.wait_closed()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="TCP proxy adding a propagation delay in both directions.")
    parser.add_argument("--listen", type=endpoint, required=True, help="HOST:PORT to accept on (PORT 0: any)")
    parser.add_argument("--to", type=endpoint, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=delay, required=True, help="delay each way in ms (round trip: twice this)")
    sys.exit(asyncio.run(main(parser.parse_args())))
