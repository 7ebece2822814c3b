"""lxcs."""
