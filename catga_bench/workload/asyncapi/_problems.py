"""Problems at a node of an AsyncAPI document, and the JSON-pointer helpers that name the node
(RFC 6901)."""

from __future__ import annotations

import json
from pathlib import Path


class _Problem(Exception):
    """A problem at a node of the document; becomes a :class:`ConfigError` naming the file."""

    def __init__(self, pointer: str, text: str) -> None:
        super().__init__(pointer, text)
        self.pointer, self.text = pointer, text

    def line(self, file: Path | None) -> str:
        parts = [str(file)] if file is not None else []
        parts += [self.pointer] if self.pointer else []
        return ": ".join([*parts, self.text]).replace("\r", " ").replace("\n", " ")


def _show(value: object) -> str:
    """``value`` as it would be written in JSON, cut short."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _esc(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _join(pointer: str, *keys: object) -> str:
    return pointer + "".join("/" + _esc(k) for k in keys)


def pointer_tokens(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 JSON pointer, unescaped (``"/a~1b/0"`` ->
    ``["a/b", "0"]``)."""
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: "a string"}.get(
        type(value), f"a {type(value).__name__}")
