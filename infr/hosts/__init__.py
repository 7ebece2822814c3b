"""A Debian host: its base system, admin keys, adopt, reinstall, ssh.

The state lock is held for the whole of each operation. A host is recorded (as
`installing`) before anything is done to it, so its vnet address is reserved and a
run cut off half-way is resumed by running the same command again.
"""
