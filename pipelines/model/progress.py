"""Progress callbacks: how long-running library calls report what they are doing, without logging."""

from __future__ import annotations

from collections.abc import Callable

# A line of progress for a person ("read contacts: 1,200,000 rows"); the CLI sends it to stderr.
Progress = Callable[[str], None]
# Bytes done out of bytes in all, for transfers (SFTP uploads).
ByteProgress = Callable[[int, int], None]


def silent(_: str) -> None:
    """No progress: the default where nobody is watching."""
    return
