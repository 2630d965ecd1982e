"""Trace readers: one module per file format, all returning a ``load_generator.trace.Trace``.

``read_file(path)`` sniffs the format from the extension and header line.
"""

from load_generator.readers.detect import read_file

__all__ = ["read_file"]
