"""Real local stand-ins for development and tests: replay server, embedded broker, synthesiser."""
