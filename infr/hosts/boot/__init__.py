"""hosts/boot."""
