"""infr: run your own hosting on rented VPSes."""

__version__ = "0.1.0"
