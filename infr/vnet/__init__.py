"""vnet."""
