"""Routing on a host: HAProxy serving its LXCs (haproxy.cfg, the apply script) and their certificates."""
