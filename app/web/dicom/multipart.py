"""multipart/related bodies (PS3.18 8.6.1.2): read STOW-RS requests, write WADO-RS answers.

Small and strict on purpose: the parts are DICOM files; a part's own headers matter only for
its Content-Type.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

_PARAM = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class MultipartError(ValueError):
    """The body is not the multipart/related it claims to be; the message says how."""


@dataclass(frozen=True)
class MediaType:
    type: str  # lower case, e.g. "multipart/related"
    params: dict[str, str]  # names lower case, quotes removed


def parse_media_type(value: str) -> MediaType:
    head, _, rest = value.partition(";")
    params = {}
    for name, raw in _PARAM.findall(";" + rest):
        raw = raw.strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = raw[1:-1].replace('\\"', '"')
        params[name.lower()] = raw
    return MediaType(head.strip().lower(), params)


def split_accept(value: str) -> list[MediaType]:
    """The media ranges of an Accept header, in the order given (quality values ignored: the
    first acceptable range wins). Commas inside quoted parameters do not split."""
    ranges, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            ranges.append("".join(current))
            current = []
        else:
            current.append(char)
    ranges.append("".join(current))
    return [parse_media_type(r) for r in ranges if r.strip()]


@dataclass(frozen=True)
class Part:
    content_type: str
    body: bytes


def read_parts(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/related body. Raises MultipartError naming what is wrong."""
    media = parse_media_type(content_type)
    if media.type != "multipart/related":
        raise MultipartError(f"Content-Type must be multipart/related, not {media.type or 'missing'}")
    boundary = media.params.get("boundary")
    if not boundary:
        raise MultipartError("the multipart/related Content-Type has no boundary parameter")
    default_type = media.params.get("type", "")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise MultipartError("the body holds no part delimited by the boundary")
    parts = []
    # chunks[0] is the preamble; the last chunk starts with "--" (the close delimiter).
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        header_block, separator, payload = chunk.partition(b"\r\n\r\n")
        if not separator:
            # A part without headers: the body starts right after the delimiter's line end.
            header_block, payload = b"", chunk
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        part_type = default_type
        for line in header_block.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-type":
                part_type = value.strip()
        parts.append(Part(parse_media_type(part_type).type if part_type else "", payload))
    else:
        raise MultipartError("the body does not end with the closing boundary")
    return parts


def write_parts(parts: Iterable[bytes], part_type: str, transfer_syntax: str | None) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/related answer whose parts are all ``part_type``."""
    boundary = "fetalcns-" + secrets.token_hex(16)
    part_header = f"Content-Type: {part_type}"
    if transfer_syntax:
        part_header += f"; transfer-syntax={transfer_syntax}"
    out = bytearray()
    for body in parts:
        out += f"--{boundary}\r\n{part_header}\r\n\r\n".encode("latin-1")
        out += body
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode("latin-1")
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return content_type, bytes(out)
