"""HDR latency histograms as the toolkit keeps and ships them (Gil Tene's HdrHistogram).

Values are microseconds, 1 us .. 1 hour, 3 significant digits. A histogram crosses process
boundaries (Locust worker -> master, served core -> generator) in HdrHistogram's compressed
base64 form (:func:`encode_hdr` / :func:`decode_hdr`), so several processes merge exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

#: HDR histogram range: 1 us .. 1 hour, 3 significant digits (values in microseconds)
HDR_MAX_US = 3_600_000_000


def new_hdr() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, HDR_MAX_US, 3)


def encode_hdr(h: HdrHistogram) -> str:
    """The histogram in HdrHistogram's compressed base64 form (a JSON-friendly ``str``)."""
    data = h.encode()
    return data.decode() if isinstance(data, bytes) else str(data)


def decode_hdr(encoded: str | HdrHistogram) -> HdrHistogram:
    """A histogram from :func:`encode_hdr`'s form (an ``HdrHistogram`` passes through)."""
    if isinstance(encoded, HdrHistogram):
        return encoded
    h = new_hdr()
    h.decode_and_add(encoded)
    return h


def merge_hdr(encoded: Iterable[str | HdrHistogram]) -> HdrHistogram:
    """One histogram holding every value of the given ones."""
    total = new_hdr()
    for e in encoded:
        total.add(decode_hdr(e))
    return total


__all__ = ["HDR_MAX_US", "decode_hdr", "encode_hdr", "merge_hdr", "new_hdr"]
