#!/usr/bin/env bash
# The Infr tutorial (docs/tutorial.md), run for real on two local lab VMs standing in for
# rented VPSes. Leaves the lab running so you can look around; stop it with
#   .venv/bin/infr -w .tutorial lab down
set -euo pipefail
cd "$(dirname "$0")"
.ci/install
# The tutorial's key is remembered in its own per-user config, not in yours (~/.config/infr).
export PATH="$PWD/.venv/bin:$PATH" INFR_DIR="$PWD/.tutorial" XDG_CONFIG_HOME="$PWD/.tutorial-config"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

key="$INFR_DIR/admin_ed25519"
if [ ! -f "$INFR_DIR/infr.toml" ]; then
    mkdir -p "$INFR_DIR"
    [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C tutorial@infr -f "$key"
    step infr init --yes --dns-domain example.com --admin-email admin@example.com --ssh-key "$key.pub"
fi
step infr lab up --hosts 2
mapfile -t ips < <(infr lab status -o csv | awk -F, 'NR > 1 {print $2}')
# The first -i is remembered: no command after this one needs it.
step infr -i "$key" hosts add --adopt --yes bob "${ips[0]}"
step infr hosts add --adopt --yes tom "${ips[1]}"
step infr hosts
step infr host bob
step infr dns
step infr host bob ssh -- 'hostname; id; sudo -n true && echo sudo works; findmnt -no FSTYPE /'
second="$INFR_DIR/second_ed25519"
[ -f "$second" ] || ssh-keygen -q -t ed25519 -N '' -C second@infr -f "$second"
infr keys | grep -q second@infr || step infr keys add "$second.pub"
step infr -i "$second" host tom ssh -- 'echo logged in to $(hostname) with the second key'
step infr host bob reconfigure
# Containers: the lab cannot reach LXC's image server, so build a Debian image here once.
step infr lab rootfs --use
step infr lxcs add fozzie debian bookworm bob
step infr lxc fozzie ssh -- 'sudo sh -c "mkdir -p /srv/www && echo hello from fozzie > /srv/www/index.html && (busybox httpd -p 80 -h /srv/www 2>/dev/null || true)"'
step infr lxc fozzie http FORWARD
step curl -sS -H "Host: fozzie.infr.example.com" "http://${ips[0]}/"
step infr lxcs
step infr backup start bob tom
# tom's timer pulls every five minutes; start the first run now instead of waiting
# (a full copy of bob's root: about four minutes on emulated lab VMs).
step infr backup run bob tom
step infr backups
step infr host bob backups
step infr backup status
step infr vnet status
# State says what every host should be; `infr plan` compares, `infr apply` repairs. Break two
# things by hand, as a teammate or a restored backup might, and let infr find and fix them.
step infr plan
step infr host bob ssh -- 'sudo systemctl stop haproxy; echo "# edited by hand" | sudo tee -a /etc/hosts >/dev/null'
step infr plan || [ $? -eq 2 ]  # exit 2: something differs
step infr apply --yes
step infr plan
step infr history
printf '\nThe lab is still running. Stop it with: .venv/bin/infr -w .tutorial lab down\n'
