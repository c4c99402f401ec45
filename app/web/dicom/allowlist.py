"""Which calling AE titles (and from which hosts) may open an association with the listener.

An entry is ``AE`` (any host) or ``AE@HOST`` (HOST a name or an address, resolved once when the
listener starts). AE titles compare without their padding spaces, case-sensitively, as PS3.8
compares them. An empty list refuses everyone: a listener must never accept anonymous senders.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AllowEntry:
    ae_title: str
    # Addresses the host resolved to; None means any host.
    addresses: frozenset[str] | None


def parse_allow(entries: Iterable[str]) -> list[AllowEntry]:
    """Entries from the command line (one per ``--allow``) or FETALCNS_DICOM_ALLOW (comma-separated).

    Raises ValueError naming the bad entry: an empty or over-long AE title, or a host that
    does not resolve.
    """
    parsed: list[AllowEntry] = []
    for raw in entries:
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            ae_title, _, host = item.partition("@")
            ae_title = ae_title.strip()
            if not ae_title or len(ae_title) > 16 or "\\" in ae_title:
                raise ValueError(f"allow-list entry {item!r}: the AE title must be 1-16 characters")
            addresses = None
            if host.strip():
                try:
                    _, _, resolved = socket.gethostbyname_ex(host.strip())
                except OSError as exc:
                    raise ValueError(
                        f"allow-list entry {item!r}: host {host.strip()!r} does not resolve"
                    ) from exc
                addresses = frozenset(resolved)
            parsed.append(AllowEntry(ae_title, addresses))
    return parsed


def is_allowed(allow: list[AllowEntry], calling_ae: str, address: str) -> bool:
    calling = calling_ae.strip()
    return any(
        entry.ae_title == calling and (entry.addresses is None or address in entry.addresses)
        for entry in allow
    )
