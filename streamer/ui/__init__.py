"""The live view: ``/ui`` (one self-contained page), ``/ui/events`` (SSE), ``/surface/{key}``."""
