"""Sites' loaded data, kept per process within a memory budget: the least recently used site is dropped first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.tasks import SiteData


class DataCache:
    """Loaded site data by key, evicted least recently used first once the held bytes pass the budget."""

    def __init__(self) -> None:
        self._held: OrderedDict[Hashable, tuple[SiteData, int]] = OrderedDict()

    def get(self, key: Hashable, load: Callable[[], SiteData], budget_bytes: int) -> SiteData:
        """The cached data for `key`, else `load()`, kept while it fits `budget_bytes` with the most recent others."""
        if key in self._held:
            self._held.move_to_end(key)
            return self._held[key][0]
        data = load()
        size = data.nbytes()
        if size <= budget_bytes:
            self._held[key] = (data, size)
            while self.held_bytes() > budget_bytes:
                self._held.popitem(last=False)
        return data

    def held_bytes(self) -> int:
        """Bytes held now."""
        return sum(size for _, size in self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        """Drop everything."""
        self._held.clear()
