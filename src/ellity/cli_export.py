"""``ellity export``: the customer CSV to stdout, or atomically to a file; ``--format ecomail``
(the default: the file for Ecomail's import, its rows written by the database) or ``excel``
(the same table for Excel, ``adapters.csv_export.ExcelCsvEncoder``).

With ``--out`` the CSV is written to a temporary file beside the target and renamed over it
only once complete, so a failure (or Ctrl-C) never leaves half a file. The file is readable
by its owner only: it holds PINs and personal data. A progress bar is drawn on stderr when
stderr is a terminal, never otherwise, so pipes and log files stay clean.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TextIO

from ellity.bootstrap import export_deps
from ellity.domain.services import export, merchants
from ellity.domain.services.common import merchant_id_of
from ellity.settings import Settings

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class ProgressBar:
    """``export [##########----------]  50%  5,000 / 10,000 customers``, redrawn in place."""

    def __init__(self, total: int, stream: TextIO, *, width: int = 30) -> None:
        self.total = total
        self.stream = stream
        self.width = width
        self(0)

    def __call__(self, done: int) -> None:
        share = min(done / self.total, 1.0) if self.total else 1.0
        filled = round(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\rexport [{bar}] {share:4.0%}  {done:,} / {self.total:,} customers")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class AtomicFile:
    """A temporary file beside ``path``; it replaces ``path`` only if the ``with`` block succeeds.

    Creating it raises ``OSError`` when the folder is missing or not writable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        self.temporary = Path(temporary)
        self.handle: BinaryIO = os.fdopen(fd, "wb")

    def __enter__(self) -> BinaryIO:
        return self.handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if exc_type is None:
                os.replace(self.temporary, self.path)
        finally:
            self.temporary.unlink(missing_ok=True)


def run_export(
    settings: Settings, slug: str, out: Path | None, *, file_format: str = "ecomail"
) -> int:
    """The exit code; an unknown merchant raises ``MerchantNotFound`` before anything is written."""
    if out is not None and out.is_dir():
        _complain(f"{out} is a directory; give a file name.")
        return EXIT_BAD_INPUT
    try:
        return asyncio.run(_export(settings, slug, out, excel=file_format == "excel"))
    except BrokenPipeError:
        # The reader went away (``ellity export | head``): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


async def _export(settings: Settings, slug: str, out: Path | None, *, excel: bool) -> int:
    async with export_deps(settings) as deps:
        merchant = await merchants.merchant_by_slug(slug, uow=deps.uow(read_only=True))
        merchant_id = merchant_id_of(merchant)
        bar = None
        if sys.stderr.isatty():
            total = await export.count_customers(merchant_id, uow=deps.uow(read_only=True))
            bar = ProgressBar(total, sys.stderr)
        chunks = export.export_customers(
            merchant_id,
            uow_factory=deps.uow,
            encoder=deps.excel_encoder if excel else deps.export_encoder,
            clock=deps.clock,
            rows=None if excel else deps.export_rows,
            progress=bar,
        )
        try:
            return await _write(chunks, out)
        finally:
            if bar is not None:
                bar.finish()


async def _write(chunks: AsyncGenerator[bytes, None], out: Path | None) -> int:
    if out is None:
        await _drain(chunks, sys.stdout.buffer)
        return 0
    try:
        output = AtomicFile(out)
    except OSError as exc:
        _complain(f"cannot write {out}: {exc.strerror or exc}")
        return EXIT_BAD_INPUT
    try:
        with output as handle:
            await _drain(chunks, handle)
    except OSError as exc:
        _complain(f"the export to {out} failed, nothing was written: {exc.strerror or exc}")
        return EXIT_FAILED
    return 0


async def _drain(chunks: AsyncGenerator[bytes, None], sink: BinaryIO) -> None:
    """Chunks are written from a worker thread: the next one is read from the database
    meanwhile (a chunk is some megabytes)."""
    async with aclosing(chunks):
        async for chunk in chunks:
            await asyncio.to_thread(sink.write, chunk)
    sink.flush()


def _complain(message: str) -> None:
    print(f"ellity: {message}", file=sys.stderr)
