"""The head high-water mark lives in the engine (ledger.engine.head_mark: every key
holder's checkpoint raises it, and opening a ledger checks it); the names stay here for
the mirror and older imports."""

from ledger.engine.head_mark import MARK_NAME, HeadMark, mark_path, read_mark, write_mark

__all__ = ["MARK_NAME", "HeadMark", "mark_path", "read_mark", "write_mark"]
