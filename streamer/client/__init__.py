"""The subscriber side of ``vol.surface.v1``, for market-making and risk services.

- :class:`SurfaceSubscriber`: ``async with`` / ``async for`` over decoded surfaces,
  the latest per key first, then live updates.
- :class:`Surface`: one decoded message as a whole surface, ``vol(K, T)``,
  ``total_variance(k, T)``, ``forward(T)``, interpolated across expiries.
- :class:`Slice`: one published expiry, evaluated with its model's core functions.
- :func:`read_history`: every surface the topic holds, read once to its end.

Layering: the client sits beside the sinks, on top of ``types``, ``core`` and the
codec; it imports nothing from the pipeline, sources or app.
"""

from streamer.client.history import read_history
from streamer.client.slices import Slice
from streamer.client.subscriber import SurfaceSubscriber
from streamer.client.surface import Surface

__all__ = ["Slice", "Surface", "SurfaceSubscriber", "read_history"]
