"""Containers: the LXCs state puts on each host, as infr makes and keeps them."""
