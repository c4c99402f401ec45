"""Text of a reportlab PDF without a PDF library: its content streams' strings."""

from __future__ import annotations

import base64
import contextlib
import re
import zlib


def pdf_text(data: bytes) -> str:
    """The text shown by a reportlab PDF: its (Flate-compressed or plain) content streams' strings.

    Escaped parentheses and backslashes in the strings are undone.
    """
    chunks = []
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        raw = match.group(1).strip()
        if raw.endswith(b"~>"):  # reportlab's default: ASCII85 over Flate
            raw = base64.a85decode(raw[:-2].replace(b"\n", b"").replace(b"\r", b""))
        with contextlib.suppress(zlib.error):  # an uncompressed stream stays as it is
            raw = zlib.decompress(raw)
        chunks += re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", raw)
    text = " ".join(c.decode("latin-1") for c in chunks)
    return re.sub(r"\\(.)", r"\1", text)
