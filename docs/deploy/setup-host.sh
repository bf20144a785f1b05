#!/usr/bin/env bash
# Prepare a host for jtca's systemd units (issue #16, docs/deploy.md "The host"): the jtca
# system user and group, and the folders the units name, with their owners and modes:
#   /opt/jtca                 root:root 0755   the install (/opt/jtca/.venv, this checkout)
#   /etc/jtca                 root:jtca 0750   jtca.env, TLS certificate and key, config.toml
#   /etc/jtca/tls             root:jtca 0750   server.pem (0644), server-key.pem (0640)
#   /var/lib/jtca             jtca:jtca 0750   the service's working folder
#   /var/lib/jtca/state       jtca:jtca 0700   tokens' configuration, SoftHSM2 files, logs
#   /var/lib/jtca/lists       jtca:jtca 0755   the publisher's mirror the web server serves
#   /var/backups/jtca         root:root 0700   pg_dump files and token backups
# Run as root. Safe to run again: it changes only what differs.
# --root DIR  prepares DIR/etc, DIR/var... instead of /, and records owners rather than setting
#             them when not run as root (a test or a package build; the user is not created).
set -euo pipefail

root=""
while (($#)); do
  case "$1" in
    --root) root=${2:?--root needs a folder}; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "setup-host: unknown argument: $1" >&2; exit 2 ;;
  esac
done

real_root=0
[ -z "$root" ] && real_root=1
if [ "$(id -u)" != 0 ] && [ "$real_root" = 1 ]; then
  echo "setup-host: run as root (or with --root DIR for a test)" >&2
  exit 1
fi

if [ "$real_root" = 1 ]; then
  if ! getent group jtca >/dev/null; then groupadd --system jtca; fi
  if ! getent passwd jtca >/dev/null; then
    useradd --system --gid jtca --home-dir /var/lib/jtca --no-create-home \
      --shell /usr/sbin/nologin --comment "jtca authority service" jtca
  fi
fi

# path owner group mode
folders=(
  "/opt/jtca root root 0755"
  "/etc/jtca root jtca 0750"
  "/etc/jtca/tls root jtca 0750"
  "/var/lib/jtca jtca jtca 0750"
  "/var/lib/jtca/state jtca jtca 0700"
  "/var/lib/jtca/lists jtca jtca 0755"
  "/var/backups/jtca root root 0700"
)
[ "$real_root" = 1 ] || mkdir -p "$root"
[ "$real_root" = 1 ] || mkdir -p "$root"
manifest="$root/.jtca-owners"
[ "$real_root" = 1 ] || : > "$manifest"
for entry in "${folders[@]}"; do
  read -r path owner group mode <<<"$entry"
  target="$root$path"
  mkdir -p "$target"
  chmod "$mode" "$target"
  if [ "$(id -u)" = 0 ] && { [ "$real_root" = 1 ] || { getent passwd "$owner" && getent group "$group"; } >/dev/null; }; then
    chown "$owner:$group" "$target"
  fi
  [ "$real_root" = 1 ] || echo "$path $owner $group $mode" >> "$manifest"
done

# the service's environment: the database URL (its password in ~jtca/.pgpass or here)
env_file="$root/etc/jtca/jtca.env"
if [ ! -e "$env_file" ]; then
  umask 027
  cat > "$env_file" <<'ENV'
# jtca.service reads this (EnvironmentFile=). The service's login has no DDL (postgres-roles.sql).
JTCA_DATABASE_URL=postgresql+psycopg://jtca_service@localhost/jtca
ENV
  chmod 0640 "$env_file"
  if [ "$real_root" = 1 ]; then chown root:jtca "$env_file"; fi
fi
[ "$real_root" = 1 ] || echo "/etc/jtca/jtca.env root jtca 0640" >> "$manifest"
echo "setup-host: ready${root:+ under $root}"
