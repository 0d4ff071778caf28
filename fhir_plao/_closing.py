"""One base for the package's context managers: ``with X(...) as x:`` closes ``x`` at the end."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing:
    """``__enter__`` returns the object (after :meth:`_open`), ``__exit__`` calls :meth:`close`."""

    def _open(self) -> None:
        """Called on entering the block; nothing by default."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
