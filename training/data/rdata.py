"""A small reader of R data files (``.rda`` / ``.RData``: R's XDR serialisation, format versions 2 and 3).

Enough of the format for data sets (numeric, integer, logical and character vectors, lists, attributes
such as names and dim, symbols and references); environments, closures and byte code are refused. The
format is documented in R Internals ("Serialization formats") and src/main/serialize.c. Reading never
executes anything: values become numpy arrays, lists, dicts and strings.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP = 0, 1, 2, 3, 4
LANGSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP, VECSXP = 6, 9, 10, 13, 14, 15, 16, 19
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, EMPTYENV_SXP, BASEENV_SXP = 255, 254, 253, 242, 241
MISSINGARG_SXP, BASENAMESPACE_SXP = 251, 250
NA_INTEGER = -(2**31)


class RDataError(ValueError):
    """The file is not an R data file this reader understands; the message says why."""


@dataclass
class RObject:
    """A vector or list with its R attributes (``names``, ``dim``, ``class``...)."""

    value: object
    attributes: dict = field(default_factory=dict)


def _decompress(raw: bytes, path: Path) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw)
    return raw


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.d, self.i, self.path, self.refs = data, 0, path, []

    def bytes(self, n: int) -> bytes:
        if self.i + n > len(self.d):
            raise RDataError(f"{self.path} is truncated (needed {n} bytes at offset {self.i})")
        b = self.d[self.i : self.i + n]
        self.i += n
        return b

    def int(self) -> int:
        return struct.unpack(">i", self.bytes(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + (lo & 0xFFFFFFFF)
        return n

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if t == NILVALUE_SXP:
            return None
        if t in (GLOBALENV_SXP, EMPTYENV_SXP, BASEENV_SXP, MISSINGARG_SXP, BASENAMESPACE_SXP):
            return None
        if t == REFSXP:
            k = flags >> 8
            if k == 0:
                k = self.int()
            return self.refs[k - 1]
        if t == SYMSXP:
            name = self.item()  # a CHARSXP
            self.refs.append(name)
            return name
        if t in (LISTSXP, LANGSXP):
            # A pairlist, read iteratively along its CDR (long pairlists would otherwise recurse deeply).
            out = {}
            attrs = None
            while True:
                if has_attr:
                    attrs = self.item()
                tag = self.item() if has_tag else None
                val = self.item()
                out[tag if tag is not None else len(out)] = val
                flags = self.int()
                t = flags & 0xFF
                if t == NILVALUE_SXP:
                    break
                if t not in (LISTSXP, LANGSXP):
                    raise RDataError(f"{self.path}: unexpected pairlist tail of type {t}")
                has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
            return RObject(out, attrs or {}) if attrs else out
        if t == CHARSXP:
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8", "replace")
        if t in (LGLSXP, INTSXP):
            n = self.length()
            v = np.frombuffer(self.bytes(4 * n), ">i4").astype(np.int64)
            v = np.where(v == NA_INTEGER, np.iinfo(np.int64).min, v)
            v = v.astype(bool) if t == LGLSXP else v
        elif t == REALSXP:
            n = self.length()
            v = np.frombuffer(self.bytes(8 * n), ">f8").astype(np.float64)
        elif t == CPLXSXP:
            n = self.length()
            v = np.frombuffer(self.bytes(16 * n), ">f8").astype(np.float64).view(np.complex128)
        elif t == STRSXP:
            n = self.length()
            v = [self.item() for _ in range(n)]
        elif t == VECSXP:
            n = self.length()
            v = [self.item() for _ in range(n)]
        else:
            raise RDataError(
                f"{self.path} holds an R object of type {t} (environment, function or code), which this "
                "reader does not read; only data vectors, lists and attributes are supported"
            )
        attrs = self.item() if has_attr else None
        return _shape(v, attrs) if attrs else v


def _shape(v, attrs) -> RObject | np.ndarray:
    attrs = attrs if isinstance(attrs, dict) else {}
    dim = attrs.get("dim")
    if isinstance(v, np.ndarray) and dim is not None:
        # R stores arrays column-major.
        v = v.reshape(tuple(int(d) for d in np.asarray(dim))[::-1]).T
    if isinstance(v, list) and "names" in attrs:
        names = attrs["names"]
        if isinstance(names, list) and len(names) == len(v):
            return RObject(dict(zip(names, v, strict=True)), attrs)
    return RObject(v, attrs)


def read_rdata(path: str | Path) -> dict:
    """Objects of an ``.rda`` file by name (values unwrapped to numpy arrays / dicts / lists)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise RDataError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        data = _decompress(raw, p)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise RDataError(f"{p} is a damaged compressed file ({e})") from None
    if data[:5] not in (b"RDX2\n", b"RDX3\n") or data[5:7] != b"X\n":
        raise RDataError(f"{p} is not an R data file in XDR format (header {data[:7]!r})")
    r = _Reader(data, p)
    r.i = 7
    version = r.int()
    r.int()  # R version that wrote it
    r.int()  # oldest R version that can read it
    if version == 3:
        r.bytes(r.int())  # native encoding name
    elif version != 2:
        raise RDataError(f"{p}: serialisation version {version} is not supported (2 or 3 are)")
    top = r.item()
    if not isinstance(top, dict):
        raise RDataError(f"{p}: expected a pairlist of named objects at the top")
    return {k: unwrap(v) for k, v in top.items()}


def unwrap(v):
    """RObject -> its value (recursively for named lists); arrays keep their shape."""
    if isinstance(v, RObject):
        return unwrap(v.value)
    if isinstance(v, dict):
        return {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v
