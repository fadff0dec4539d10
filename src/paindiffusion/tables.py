"""Reading numeric CSV tables the way users make them: in chunks, with one-line errors.

One reader for every table we accept (stimulus files, BioVid temperature/label streams, face CSVs, saved
sequences): the ``csv`` module with ``utf-8-sig`` (spreadsheets write a byte-order mark), the delimiter
sniffed among comma, semicolon and tab, strict numbers (``4_0`` is not 40, ``41,5`` is refused with a
hint), and rows delivered in fixed-size chunks so memory does not grow with the file.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import PainDiffusionError, os_error

CHUNK_ROWS = 16384
DELIMITERS = ",;\t"
# What float() accepts minus its extras (underscores, inf/nan spelled out): plain decimal numbers, and the
# words nan/inf so that they can be reported as NaN/inf rather than as unparsable text.
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|nan|inf|infinity)\s*", re.IGNORECASE)


def _sniff(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:  # a one-column file or an odd sample: the header line decides
        first = sample.splitlines()[0] if sample else ""
        return next((d for d in "\t;," if d in first), ",")


class Table:
    """An open CSV: ``header`` (stripped names) and :meth:`chunks` of float columns."""

    def __init__(self, path: str | os.PathLike, what: str = "CSV file"):
        self.path = Path(path)
        self.what = what
        self.line = 1  # the line last read (1 = the header)
        if self.path.is_dir():
            raise PainDiffusionError(f"is a folder; pass a {what}", self.path)
        if not self.path.is_file():
            raise PainDiffusionError(f"file not found; pass a {what}", self.path)
        try:
            self._f = open(self.path, newline="", encoding="utf-8-sig")
            sample = self._f.read(8192)
            self._f.seek(0)
        except UnicodeDecodeError as e:
            self.close()
            with open(self.path, "rb") as raw:  # the line of the bad byte, for the message
                self.line = raw.read(e.end + 3).count(b"\n") + 1  # (+3: a BOM is skipped by utf-8-sig)
            raise self._not_text() from None
        except OSError as e:
            raise os_error(e, self.path, "cannot read") from None
        self.delimiter = _sniff(sample)
        self._rows = csv.reader(self._f, delimiter=self.delimiter)
        try:
            header = next(self._rows, None)
        except (UnicodeDecodeError, csv.Error) as e:
            self.close()
            raise self._bad(e) from None
        if not header or not any(h.strip() for h in header):
            self.close()
            raise PainDiffusionError(f"file is empty; a {what} starts with a header line", self.path)
        self.header = [h.strip() for h in header]

    def _not_text(self) -> PainDiffusionError:
        return PainDiffusionError(f"not a UTF-8 text file (line {self.line}); save the {self.what} as CSV in UTF-8", self.path)

    def _bad(self, e: Exception) -> PainDiffusionError:
        if isinstance(e, UnicodeDecodeError):
            self.line += 1
            return self._not_text()
        return PainDiffusionError(f"unreadable CSV at line {self.line} ({e})", self.path)

    def close(self) -> None:
        if getattr(self, "_f", None) is not None:
            self._f.close()

    def __enter__(self) -> "Table":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def require(self, *names: str) -> list[int]:
        missing = [n for n in names if n not in self.header]
        if missing:
            raise PainDiffusionError(f"missing column {missing[0]!r} (header is {self.header}); expected columns "
                                     + ", ".join(repr(n) for n in names), self.path)
        return [self.header.index(n) for n in names]

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield (line number, cells) for every data row (blank lines skipped); every row must have as many
        cells as the header. For tables with text columns; :meth:`chunks` reads numeric ones."""
        width = len(self.header)
        try:
            for row in self._rows:
                self.line += 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line (e.g. at the end)
                if len(row) != width:
                    raise PainDiffusionError(f"line {self.line} has {len(row)} cell(s) but the header has {width} "
                                             "(a ragged or truncated row); fix or remove it", self.path)
                yield self.line, row
        except (UnicodeDecodeError, csv.Error) as e:
            raise self._bad(e) from None

    def chunks(self, columns: list[int] | None = None, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first line number, float64 array (n, len(columns))) per chunk of ``rows`` data rows. Every
        row must have as many cells as the header; every cell a plain number."""
        cols = list(range(len(self.header))) if columns is None else columns
        buf: list[list[str]] = []
        start = self.line + 1
        for line, row in self.rows():
            if not buf:
                start = line
            buf.append([row[c] for c in cols])
            if len(buf) == rows:
                yield start, self._numbers(buf, start)
                buf = []
        if buf:
            yield start, self._numbers(buf, start)

    def _numbers(self, cells: list[list[str]], start: int) -> np.ndarray:
        try:
            a = np.array(cells, dtype=np.float64)
        except ValueError:
            a = None
        if a is None or any("_" in c for row in cells for c in row):  # float() reads "4_0" as 40
            for i, row in enumerate(cells):
                for c in row:
                    if not _NUMBER.fullmatch(c):
                        hint = ("; it looks like a decimal comma, save the file with decimal points"
                                if re.fullmatch(r"\s*[-+]?\d+,\d+\s*", c) else "")
                        raise PainDiffusionError(f"line {start + i}: cell {c!r} is not a number{hint}", self.path)
        return a

