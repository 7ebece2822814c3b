"""The lab: real Debian 12 hosts as local qemu VMs, for trying infr and for its tests.

    lab = Lab(lab_dir, admin_pubkey)
    hosts = lab.up(2, progress=print)   # -> [LabHost(name="lab1", ip="198.51.100.11", ...), ...]
    lab.status()
    lab.down()

No click or rich here: the CLI layer wraps this API.
"""

from infr.lab.lab import Lab, LabConfig, LabHost

__all__ = ["Lab", "LabConfig", "LabHost"]
