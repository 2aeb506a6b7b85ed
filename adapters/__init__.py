"""Channel adapters, one package per channel, each with the same file roles (see ARCHITECTURE.md)."""
