"""Named float parameters: a model's (one expiry's or a surface's), a smile's jump wings."""

from __future__ import annotations

import msgspec


class NamedFloats(msgspec.Struct, frozen=True, kw_only=True):
    """Floats by name, in the order the fields are declared."""

    def as_dict(self) -> dict[str, float]:
        """By name, for the published message."""
        return msgspec.structs.asdict(self)
