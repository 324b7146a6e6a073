#!/usr/bin/env bash
# Runs inside the debootstrapped root (chroot) to make it boot cleanly as a container.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Units that have no meaning in a container and only slow boot or fail there.
for unit in getty@tty1.service serial-getty@.service console-getty.service \
            systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
            systemd-udevd.service systemd-udev-trigger.service dev-hugepages.mount \
            systemd-logind.service systemd-firstboot.service \
            systemd-networkd-wait-online.service; do
  ln -sf /dev/null "/etc/systemd/system/${unit}"
done
systemctl set-default multi-user.target

# Each container gets its own identity: machine-id and SSH host keys are made at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/10-hostkeys.conf <<'UNIT'
[Service]
# Host keys first, then the stock config check.
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT

# apt: no recommends (like the cloud images), and keep the image small.
printf 'APT::Install-Recommends "false";\n' > /etc/apt/apt.conf.d/90no-recommends
cat > /etc/apt/sources.list <<'SRC'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
apt-get update -qq
apt-get clean
rm -rf /var/cache/apt/*.bin /tmp/* /var/tmp/*
