"""Stateful, synchronous, no network: quotes in, surface updates out; time passed in."""
