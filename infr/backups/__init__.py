"""Backups between hosts: btrbk on each TO host pulls snapshots of its FROM hosts (see infr.core.backups)."""
