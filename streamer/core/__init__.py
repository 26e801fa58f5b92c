"""Pure numerical core: no IO, no asyncio, no globals; numpy-vectorised."""
