r"""Reading a ZPL job back the way a printer reads it, for the label tests.

Written from Zebra's ZPL II manual, apart from the code that writes labels: a job is split into
its fields (the commands up to `^FS`), field data is hex-processed as `^FH` says, and the data of
a `^BX` (quality 200) or `^BC` (mode N) field is turned back into the symbol's content, with GS
(ASCII 29) where the symbol has an FNC1 separator. `render` draws a job with zplkit (a local
ZPL renderer) and `decode` reads the picture with zxing-cpp, a real barcode reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import zplkit
import zxingcpp

if TYPE_CHECKING:
    from zplkit.rendering import Document

GS = b"\x1d"
Profile = Literal["zd621", "specification"]


@dataclass
class ZplField:
    """One field of a label: its commands (name, parameters) in order, and its data."""

    commands: list[tuple[str, str]]
    data: bytes

    def params(self, name: str) -> list[str] | None:
        """The parameters of the field's last `name` command (None: it has none)."""
        found = [p for n, p in self.commands if n == name]
        return found[-1].split(",") if found else None

    @property
    def barcode(self) -> str | None:
        """The barcode command of the field (`BX`, `BC`, …), None for text."""
        codes = [n for n, _ in self.commands if n.startswith("B") and n != "BY"]
        return codes[-1] if codes else None

    @property
    def text(self) -> str:
        """The field data as text (UTF-8, as `^CI28` prints it)."""
        return self.data.decode()


def read_fields(job: bytes) -> list[ZplField]:
    """The fields of one label format; fails on anything our labels never hold."""
    text = job.decode("latin-1")
    assert "~" not in text, "a control command in the job"
    assert text.count("^XA") == 1, "not exactly one ^XA"
    assert text.count("^XZ") == 1, "not exactly one ^XZ"
    body = text[text.index("^XA") + 3 : text.index("^XZ")]
    fields: list[ZplField] = []
    commands: list[tuple[str, str]] = []
    data: bytes | None = None
    for token in body.split("^")[1:]:
        name, params = token[:2].upper(), token[2:].rstrip("\r\n")
        if name == "FD":
            hexes = [p for n, p in commands if n == "FH"]
            data = _hex(params, hexes[-1][:1] or "_") if hexes else params.encode("latin-1")
        elif name == "FS":
            assert data is not None, f"a field without ^FD: {commands}"
            fields.append(ZplField(commands, data))
            commands, data = [], None
        else:
            commands.append((name, params))
    return fields


def _hex(data: str, indicator: str) -> bytes:
    """`^FH` processing: the indicator and two hex digits make one byte."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == indicator:
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out += data[i].encode("latin-1")
            i += 1
    return bytes(out)


def datamatrix_content(field: ZplField) -> tuple[bool, bytes]:
    """A `^BX` quality 200 field's content: (GS1, data with GS for FNC1 separators)."""
    params = field.params("BX")
    assert params is not None
    assert params[2] == "200", "not ECC 200"
    escape = params[6] if len(params) > 6 and params[6] else "~"  # current firmware's default
    data = field.data.decode("latin-1")
    out = bytearray()
    gs1 = False
    i = 0
    while i < len(data):
        if data[i] != escape:
            out += data[i].encode("latin-1")
            i += 1
            continue
        code = data[i + 1]
        if code == "1" and i == 0:
            gs1 = True  # FNC1 first: a GS1 DataMatrix
        elif code == "1":
            out += GS
        elif code == escape:
            out += escape.encode()
        else:
            raise AssertionError(f"unexpected DataMatrix escape {escape}{code}")
        i += 2
    return gs1, bytes(out)


def code128_content(field: ZplField) -> tuple[bool, bytes]:
    """A `^BC` mode N field's content: (GS1, data with GS for FNC1 separators)."""
    params = field.params("BC")
    assert params is not None
    assert (params + [""] * 6)[5] in ("", "N"), "not mode N"
    data = field.data.decode("ascii")
    out = bytearray()
    subset = "B"  # ZPL's default start
    gs1 = False
    i = 0
    while i < len(data):
        if data[i] == ">":
            code = data[i + 1]
            i += 2
            if code in ";:":
                assert i == 2, "a start code inside the data"
                subset = "C" if code == ";" else "B"
            elif code == "8" and not out and not gs1:
                gs1 = True  # FNC1 first: a GS1-128
            elif code == "8":
                out += GS
            elif code == "5":
                assert subset == "B"
                subset = "C"
            elif code == "6":
                assert subset == "C"
                subset = "B"
            elif code == "0":
                assert subset == "B"
                out += b">"
            else:
                raise AssertionError(f"unexpected Code 128 invocation >{code}")
        elif subset == "C":
            pair = data[i : i + 2]
            assert re.fullmatch(r"\d\d", pair), f"subset C needs digit pairs, got {pair!r}"
            out += pair.encode()
            i += 2
        else:
            out += data[i].encode()
            i += 1
    return gs1, bytes(out)


@dataclass(frozen=True)
class Decoded:
    """One barcode a reader found in a picture."""

    format: str
    symbology_identifier: str
    gs1: bool
    content: bytes


def render(job: bytes, profile: Profile = "zd621") -> Document:
    """The job drawn as the printer model `profile` would print it."""
    return zplkit.render(job, zplkit.Options(profile=profile))


def decode(job: bytes, profile: Profile = "zd621") -> list[Decoded]:
    """Every barcode zxing-cpp reads in the rendered label, top to bottom."""
    document = render(job, profile)
    assert len(document.labels) == 1
    raster = document.labels[0].rasterize()
    image = memoryview(raster.pixels).cast("B", shape=[raster.height, raster.width])
    found = sorted(
        zxingcpp.read_barcodes(image),
        key=lambda b: (b.position.top_left.y, b.position.top_left.x),
    )
    return [
        Decoded(
            format=str(b.format),
            symbology_identifier=b.symbology_identifier,
            gs1=b.content_type == zxingcpp.ContentType.GS1,
            content=b.bytes,
        )
        for b in found
    ]
