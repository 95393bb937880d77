"""TLS for the Docker listener, as dockerd's ``--tlsverify --tlscacert --tlscert --tlskey``.

Why not asyncio's own TLS (``start_server(ssl=...)``): a hijacked attach or exec is a two-way stream
that each side half-closes on its own. The Docker CLI ends stdin with ``tls.Conn.CloseWrite``, a TLS
``close_notify``, and then keeps reading the container's output; asyncio's SSL protocol answers a
``close_notify`` by shutting the whole connection down, which would cut that output off (``echo hi |
docker run -i ... cat`` would print nothing). So the listener accepts plain TCP and runs TLS itself
with ``ssl.MemoryBIO``: ``TlsReader.read`` returns ``b""`` at the client's ``close_notify`` while
``TlsWriter`` still writes, and ``TlsWriter.write_eof`` sends ours (the server's half-close).

A client that speaks plain HTTP to the TLS port gets the answer Go's servers (dockerd) give it, ``400
Client sent an HTTP request to an HTTPS server.``, instead of a handshake error it cannot read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
HANDSHAKE_TIMEOUT = 10.0
PLAIN_HTTP_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
TLS_HANDSHAKE_RECORD = 0x16


class TlsConfigError(ValueError):
    """The TLS files cannot be used; the message names the file and the setting."""


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key, and the CA its clients' certificates must chain to."""

    cert: Path
    key: Path
    ca: Path | None
    verify: bool = True
    """Require a client certificate signed by ``ca`` (dockerd's ``--tlsverify``)."""


def _check_file(path: Path, setting: str) -> None:
    if not path.is_file():
        raise TlsConfigError(f"{setting}: {path}: no such file")


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """An SSL context for the listener, or ``TlsConfigError`` naming the file that is wrong."""
    _check_file(files.cert, "ATOLL_DOCKER_TLS_CERT")
    _check_file(files.key, "ATOLL_DOCKER_TLS_KEY")
    if files.verify and files.ca is None:
        raise TlsConfigError(
            "ATOLL_DOCKER_TLS_CA: verifying clients needs the CA that signs their certificates"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # dockerd's minimum
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            raise TlsConfigError(
                f"ATOLL_DOCKER_TLS_KEY: {files.key} is not the key of the certificate {files.cert}"
            ) from e
        raise TlsConfigError(
            f"ATOLL_DOCKER_TLS_CERT/ATOLL_DOCKER_TLS_KEY: {files.cert} or {files.key} is not a PEM "
            f"certificate and key: {e.reason or e}"
        ) from e
    if files.ca is not None:
        _check_file(files.ca, "ATOLL_DOCKER_TLS_CA")
        try:
            ctx.load_verify_locations(cafile=str(files.ca))
        except ssl.SSLError as e:
            raise TlsConfigError(
                f"ATOLL_DOCKER_TLS_CA: {files.ca} holds no PEM CA certificate: {e.reason or e}"
            ) from e
    ctx.verify_mode = ssl.CERT_REQUIRED if files.verify else ssl.CERT_NONE
    return ctx


class TlsReader:
    """The plaintext side of one TLS connection, read on demand (no read-ahead: the client's stdin
    waits in the kernel until a handler asks for it)."""

    def __init__(self, channel: TlsChannel) -> None:
        self._channel = channel

    async def read(self, n: int = -1) -> bytes:
        return await self._channel.read(READ_SIZE if n < 0 else n)


class TlsWriter:
    record_per_write = True
    """Each ``write`` goes out as TLS records of its own, so callers can keep bytes apart
    (``RawStream.write_frame``)."""

    def __init__(self, channel: TlsChannel) -> None:
        self._channel = channel

    def write(self, data: bytes) -> None:
        self._channel.write(data)

    async def drain(self) -> None:
        await self._channel.raw_writer.drain()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._channel.close_notify()

    def close(self) -> None:
        self._channel.raw_writer.close()

    async def wait_closed(self) -> None:
        await self._channel.raw_writer.wait_closed()

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "peercert":
            return self._channel.tls.getpeercert()
        return self._channel.raw_writer.get_extra_info(name, default)


class TlsChannel:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
    ) -> None:
        self.raw_reader = reader
        self.raw_writer = writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._eof = False
        self._sent_close_notify = False

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.raw_writer.write(data)

    async def _receive(self) -> bool:
        """More ciphertext from the client into the TLS object; False at the end of the TCP stream."""
        self._flush()
        data = await self.raw_reader.read(READ_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> bool:
        """Complete the handshake; False (after answering) if the client spoke plain HTTP."""
        first = await self.raw_reader.read(READ_SIZE)
        if not first:
            raise ConnectionResetError("closed before the TLS handshake")
        if first[0] != TLS_HANDSHAKE_RECORD and first[:1].isalpha():
            self.raw_writer.write(PLAIN_HTTP_ANSWER)
            await self.raw_writer.drain()
            return False
        self._incoming.write(first)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not await self._receive():
                    raise ConnectionResetError("closed during the TLS handshake") from None
                await self.raw_writer.drain()
            except ssl.SSLError:
                self._flush()  # the alert tells the client why (no certificate, unknown CA...)
                await self.raw_writer.drain()
                raise
        self._flush()
        await self.raw_writer.drain()
        return True

    async def read(self, n: int) -> bytes:
        while not self._eof:
            try:
                data = self.tls.read(n)
            except ssl.SSLWantReadError:
                if not await self._receive():
                    self._eof = True
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            except ssl.SSLError as e:  # a corrupt record: the connection is over, as a reset is
                raise ConnectionResetError(f"TLS: {e}") from e
            self._flush()  # whatever the read produced (a key update's answer)
            if not data:  # the client's close_notify: it sends no more, but may still read
                self._eof = True
            return data
        return b""

    def write(self, data: bytes) -> None:
        if data and not self._sent_close_notify:
            try:
                self.tls.write(data)
            except ssl.SSLError as e:
                raise ConnectionResetError(f"TLS: {e}") from e
            self._flush()

    def close_notify(self) -> None:
        if self._sent_close_notify:
            return
        self._sent_close_notify = True
        # WantRead once ours is sent: the client's close_notify is not waited for.
        with contextlib.suppress(ssl.SSLError):
            self.tls.unwrap()
        self._flush()


async def accept(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
) -> tuple[TlsReader, TlsWriter] | None:
    """TLS on an accepted TCP connection, or None (logged) when the client is refused."""
    channel = TlsChannel(reader, writer, ctx)
    peer = writer.get_extra_info("peername")
    try:
        if not await asyncio.wait_for(channel.handshake(), HANDSHAKE_TIMEOUT):
            log.info("docker TLS: %s spoke plain HTTP to the TLS port", peer)
            return None
    except (ssl.SSLError, ConnectionError, TimeoutError) as e:
        log.info("docker TLS: refused %s: %s", peer, e)
        return None
    return TlsReader(channel), TlsWriter(channel)
