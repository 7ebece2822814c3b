"""A Debian host as infr keeps it: the manager account and admin keys, sshd, names, packages, bridge."""
