"""Fragmented MP4 as the muxer writes it: top-level boxes cut into init segment and fragments.

FFmpeg's ``mp4`` muxer (``movflags=empty_moov+default_base_moof+frag_keyframe``) writes
``ftyp`` + ``moov`` once (the init segment a Media Source Extensions player appends first),
then one ``moof`` + ``mdat`` pair per fragment. :class:`BoxSplitter` is fed whatever bytes the
muxer writes, in whatever pieces, and hands back complete segments; :func:`mime_type` reads
the RFC 6381 codec string (``avc1.PPCCLL``) from the ``avcC`` box of the init segment, which
the muxer builds from the stream's SPS.
"""

from __future__ import annotations

import struct

__all__ = ["BoxSplitter", "mime_type"]

_INIT = (b"ftyp", b"moov")


class BoxSplitter:
    """Bytes in, ``("init" | "fragment", bytes)`` out, one per complete segment."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._segment = bytearray()
        self._kind: str | None = None

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._buffer += data
        done: list[tuple[str, bytes]] = []
        while len(self._buffer) >= 8:
            size, kind = struct.unpack_from(">I4s", self._buffer)
            header = 8
            if size == 1:  # 64-bit size
                if len(self._buffer) < 16:
                    break
                size = struct.unpack_from(">Q", self._buffer, 8)[0]
                header = 16
            if size < header:
                raise ValueError(f"malformed MP4 box {kind!r} of size {size}")
            if len(self._buffer) < size:
                break
            box = bytes(self._buffer[:size])
            del self._buffer[:size]
            if kind in _INIT:
                self._kind = "init"
                self._segment += box
                if kind == b"moov":
                    done.append(("init", bytes(self._segment)))
                    self._segment.clear()
                    self._kind = None
            elif kind == b"moof":
                self._segment = bytearray(box)
                self._kind = "fragment"
            elif kind == b"mdat" and self._kind == "fragment":
                self._segment += box
                done.append(("fragment", bytes(self._segment)))
                self._segment.clear()
                self._kind = None
            # anything else (mfra at the trailer, free): not part of a live stream
        return done


def _find(data: bytes, kind: bytes) -> int:
    """Offset of the payload of the first ``kind`` box anywhere in ``data`` (-1: none)."""
    at = data.find(kind)
    return -1 if at < 4 else at + 4


def mime_type(init: bytes) -> str:
    """``video/mp4; codecs="avc1.64001f"`` for the init segment's video track. Raises
    ValueError when it carries no H.264 configuration (``avcC``)."""
    at = _find(init, b"avcC")
    if at < 0 or len(init) < at + 4:
        raise ValueError("the init segment carries no H.264 configuration (avcC)")
    profile, compat, level = init[at + 1], init[at + 2], init[at + 3]
    return f'video/mp4; codecs="avc1.{profile:02x}{compat:02x}{level:02x}"'
