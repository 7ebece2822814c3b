"""The core: decides what to change. No click, no rich, no direct I/O to hosts or APIs."""
