"""Image files that lie about their size (issue 31 #3), shared by the reader and CLI tests."""

import struct
import zlib


def png_header(width: int, height: int) -> bytes:
    """A 45-byte PNG whose header claims `width` x `height` and which holds no pixel data:
    only a reader that trusts the header allocates anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
