"""``write_atomic``: every file of a run directory is written whole or not at all.

The writer fills a dot-prefixed temp file in the same folder, then ``os.replace`` puts it
in place. A reader never sees half a file, even when the writer dies mid-way:
``pyarrow.parquet.read_table(folder)`` skips dot-files, and the rename is atomic on one
file system (docs/architecture.md, "Files on disk").

Example:

>>> write_atomic(Path("run/notes.txt"), lambda tmp: Path(tmp).write_text("hi"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Calls ``write(temp_path)``, then renames the temp file onto ``path``.

    Args:
        path: the file to write; its folder is created if missing.
        write: writes the whole content to the path it is given.

    Raises:
        Whatever ``write`` raises; the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Dot-prefixed (readers skip it) and with the real suffix (Keras insists on ".keras").
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
