"""The one-shot GRUB entry that boots the installer, and the argv that installs it and reboots into it."""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

from infr.engine.templating import render
from infr.errors import ValidationError
from infr.hosts.boot.ipxe import (
    ipxe_command_line,
    render_ipxe_script,
)
from infr.hosts.boot.preseed import InstallerSource, PreseedSettings, installer_kernel_args
from infr.hosts.boot.probe import BootMethod, GrubFacts

REMOTE_DIR = "/boot/infr-install"


GRUB_ENTRY_ID = "infr-install"


GRUB_CUSTOM_CFG = "/boot/grub/custom.cfg"


GRUB_ENV = "/boot/grub/grubenv"


def render_grub_entry(
    settings: PreseedSettings,
    grub: GrubFacts,
    method: BootMethod,
    installer: InstallerSource,
) -> str:
    """The GRUB menu entry appended to custom.cfg for a one-shot boot."""
    if method is BootMethod.DISK_IPXE:
        raise ValueError("disk-ipxe does not use GRUB")
    ipxe = method is BootMethod.GRUB_IPXE
    words = ipxe_command_line(render_ipxe_script(settings, installer)).split() if ipxe else []
    return render(
        "grub-entry.cfg.j2",
        entry_id=GRUB_ENTRY_ID,
        fqdn=settings.fqdn,
        modules=grub.modules,
        boot_uuid=grub.boot_uuid,
        directory=posixpath.join(grub.boot_path, posixpath.basename(REMOTE_DIR)),
        ipxe=ipxe,
        # GRUB re-quotes any argument containing a space, so each word is quoted
        # on its own: `'&&'` reaches iPXE as a bare &&.
        ipxe_words=" ".join(_grub_quote(w) for w in words),
        kernel_args=" ".join(installer_kernel_args(settings)),
    )


def _grub_quote(word: str) -> str:
    if "'" in word:
        raise ValidationError([f"quote character in a boot argument: {word!r}"])
    return f"'{word}'"


def grub_reboot_argv() -> list[str]:
    """A reboot systemd runs two seconds later, so the SSH command returns cleanly."""
    return ["systemd-run", "--on-active=2", "systemctl", "reboot"]


@dataclass(frozen=True)
class Upload:
    local: Path
    remote: str


def verify_uploads_argv(uploads: tuple[Upload, ...]) -> list[str]:
    """Fails unless every uploaded file arrived whole."""
    sums = "".join(f"{_sha256(u.local)}  {u.remote}\n" for u in uploads)
    return ["sh", "-c", f"printf %s {shlex.quote(sums)} | sha256sum -c --quiet"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_grub_entry_argv(uploads: tuple[Upload, ...]) -> list[str]:
    """Verify the uploads, put our entry in custom.cfg (replacing an older one) and
    make it the next boot only. Where GRUB cannot write grubenv (/boot on btrfs) the
    entry stays the default, which is harmless: the install replaces the disk."""
    entry = shlex.quote(f"{REMOTE_DIR}/grub-entry.cfg")
    cfg = shlex.quote(GRUB_CUSTOM_CFG)
    script = " && ".join(
        [
            shlex.join(verify_uploads_argv(uploads)),
            f"touch {cfg}",
            f"sed -i '/^### BEGIN {GRUB_ENTRY_ID}$/,/^### END {GRUB_ENTRY_ID}$/d' {cfg}",
            f"cat {entry} >> {cfg}",
            f"grub-editenv {shlex.quote(GRUB_ENV)} set next_entry={GRUB_ENTRY_ID}",
        ]
    )
    return ["sh", "-c", script]
