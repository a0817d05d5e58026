"""Local stand-ins for external services, reached over real sockets (no patched functions)."""
