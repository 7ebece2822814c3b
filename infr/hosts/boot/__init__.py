"""The boot medium that reinstalls a VPS as Debian on btrfs (`infr hosts add`).

Everything here is pure or local: renderers for the preseed, the iPXE script and
the GRUB entry, builders that assemble the medium on the admin machine, and the
argv of each step the CLI later runs as root on the box over SSH. Nothing here
opens a connection.

How a box boots the installer (docs/how-hosts-are-installed.md says why):

* BIOS box whose GRUB we can extend (`grub-ipxe`, the default): a one-shot GRUB
  entry starts Debian's stock `ipxe.lkrn`. Its kernel command line is our iPXE
  script (one `&&` chain), its initrd our preseed cpio; the 2019 iPXE passes that
  initrd on to the installer kernel it downloads, so d-i finds /preseed.cfg.
* UEFI box with GRUB (`grub-di`): `linux16` is BIOS-only, so the entry boots the
  installer's signed kernel directly, with its initrd plus the preseed cpio.
* Box without a usable GRUB (`disk-ipxe`, BIOS only): Debian's `ipxe.iso`,
  remastered with the same command line and cpio, written over the boot disk.
  A custom iPXE built from source with the preseed embedded can replace it.
"""
