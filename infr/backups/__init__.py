"""Backups with btrbk, between pairs of hosts.

How a backup happens (the same shape as Infr's `backup-host`, done by btrbk):
- every 5 minutes a systemd timer on TO runs `btrbk clean` then `btrbk run`;
- over ssh, as the dedicated user `infr-backup`, TO asks FROM for read-only snapshots of
  its root subvolume and of each LXC rootfs, into FROM:/var/lib/btrbk/snapshots/<TO>;
- each snapshot is sent incrementally (`btrfs send -p`, parent = the newest pair both
  sides hold) into TO:/var/lib/backups/backups/<FROM>, named `<subvol>.<YYYYMMDDTHHMM>`;
- `btrfs receive` marks a subvolume read-only with a received UUID only when the stream
  is complete, so a cut transfer never looks like a backup to `parse_restore_points`;
  btrbk deletes it when the receive fails, and `btrbk clean` when the whole run was
  killed (then `ls` and `btrbk list` would still show it);
- btrbk applies the retention (`target_preserve*`) and keeps the pair the next
  incremental needs. `snapshots_to_cull` is Infr's own retention, the reference that
  btrbk's is measured against (see RETENTION_DIFFERENCES).

On FROM, TO's key is forced through `infr-backup-filter`, which hands each command to
btrbk's ssh_filter_btrbk.sh: deletes only below TO's own snapshot directory, sends only
from it, snapshots and read-only queries otherwise.

Restoring from these backups: infr.restore.
"""
