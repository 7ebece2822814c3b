"""Containers: LXCs on their hosts.

As with hosts (infr.hosts.adopt), an LXC is recorded in state before anything is done on its
host, so its vnet address is reserved and a run cut off half-way is finished by running
the same command again.

Images (setting `lxcImageSource`):
  download      `lxc-create -t download` from the LXC image server (needs the internet)
  anything else a rootfs tarball (path on this machine, or http(s) URL the host fetches),
                for offline setups. The container is made with `lxc-create -t none -B btrfs`,
                which creates the empty btrfs subvolume, and the tarball is unpacked into it;
                LXC 5's `-t local` would also need a metadata tarball nobody has.
Either way infr then writes the whole container config itself (network, autostart), so
both kinds of container end up the same.

A tarball is whatever it was built from, whatever `lxcs add` was told: once unpacked, its
os-release is read and compared with DISTRO RELEASE (infr.lxcs.osrelease). A mismatch is
refused with nothing left behind (container and record removed), unless the user asked
to record what the image is (--record-image-os). The image server needs no such check:
it picks the image by DISTRO and RELEASE.
"""
