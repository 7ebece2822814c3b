"""Restoring from backups: containers, files, drills.

What a restore point is and how a backup host lists them: infr.backups.points. The
commands run through infr.restore.container, over the admin's own SSH logins
(`manager` with sudo) to each host; a backup host needs no way into other hosts.

A container restore, onto target host T from backup host B:
1. stage, while the current container keeps running: T:/var/lib/lxc/.infr-restore/NAME.new
   receives the backup read-only (`btrfs send` on B, streamed through the admin's
   machine into `btrfs receive` on T; on B itself a snapshot does), then gets a writable
   snapshot of it as `rootfs` (never `btrfs property set ro false`, which leaves a stale
   received UUID that breaks later incrementals), its config and infr's created mark;
2. swap: stop the current container, move its directory aside to NAME.old, move
   NAME.new in, start it. If it does not start, the old one is moved back (and started
   again if it ran);
3. only then is the old container deleted.
Whatever fails before step 2 leaves the current container untouched and running. LXC
looks for containers one level down only, so nothing in .infr-restore ever autostarts.

The commands come from infr.restore.commands; this module reads state, connects (as
`manager`, with sudo) and runs them in an order where a failure leaves what runs
alone. Backups stream from the backup host to the target through this machine
(connector.pipe): the admin's logins reach every host, while no host may log in to
another (the backup host's key only reaches FROM's `infr-backup` filter, which refuses
`btrfs receive`). It costs the admin's bandwidth twice; a same-host restore copies
nothing (a snapshot).
"""
