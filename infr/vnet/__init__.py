"""The vnet: the WireGuard mesh between hosts and admins' machines, and the zones."""
