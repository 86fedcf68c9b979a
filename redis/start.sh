#!/bin/sh
# Start the broker's Redis with its ACL users: the rules of users.acl, each with its password from
# the environment, written to a private file (never to a layer, a volume or a command line), then
# `exec redis-server redis.conf --aclfile <that file> "$@"`.
#
#   REDIS_PASSWORD            password of the `default` user (workers, beat, Flower, producers)
#   REDIS_EXPORTER_PASSWORD   password of the read-only `exporter` user
#   REDIS_ADMIN_PASSWORD      optional: password of the `admin` user (all commands); unset: no admin
#   REDIS_ACL_FILE            where to write the ACL file (default /run/redis/users.acl, a tmpfs)
#   REDIS_CONF_DIR            folder of redis.conf and users.acl (default: this script's folder)
#
# Passwords must be 16+ characters of A-Z a-z 0-9 . _ ~ - (URL-safe, so they go into broker URLs
# unescaped; `openssl rand -hex 32` makes one). POSIX sh: runs in redis:7.0-alpine and on Debian.
set -eu

conf_dir=${REDIS_CONF_DIR:-$(dirname "$0")}
acl_file=${REDIS_ACL_FILE:-/run/redis/users.acl}

fail() {
  echo "redis/start.sh: $*" >&2
  exit 2
}

check_password() { # name value
  [ -n "$2" ] || fail "$1 is not set (see .env.example)"
  case $2 in
    *[!A-Za-z0-9._~-]*) fail "$1 may hold only A-Z a-z 0-9 . _ ~ - (try: openssl rand -hex 32)" ;;
  esac
  [ "${#2}" -ge 16 ] || fail "$1 must be at least 16 characters long"
}

check_password REDIS_PASSWORD "${REDIS_PASSWORD:-}"
check_password REDIS_EXPORTER_PASSWORD "${REDIS_EXPORTER_PASSWORD:-}"
[ "$REDIS_PASSWORD" != "$REDIS_EXPORTER_PASSWORD" ] || fail "REDIS_EXPORTER_PASSWORD must differ from REDIS_PASSWORD"
if [ -n "${REDIS_ADMIN_PASSWORD:-}" ]; then
  check_password REDIS_ADMIN_PASSWORD "$REDIS_ADMIN_PASSWORD"
  for other in "$REDIS_PASSWORD" "$REDIS_EXPORTER_PASSWORD"; do
    [ "$REDIS_ADMIN_PASSWORD" != "$other" ] || fail "REDIS_ADMIN_PASSWORD must differ from the other passwords"
  done
fi

umask 077
tmp="$acl_file.tmp.$$"
: >"$tmp"
while read -r keyword name rules || [ -n "$keyword" ]; do
  case $keyword in
    '' | '#'*) continue ;;
    user) ;;
    *) fail "users.acl: not a user line: $keyword $name ..." ;;
  esac
  case $name in
    default) password=$REDIS_PASSWORD ;;
    exporter) password=$REDIS_EXPORTER_PASSWORD ;;
    admin) password=${REDIS_ADMIN_PASSWORD:-} ;;
    *) fail "users.acl: no password variable for user $name" ;;
  esac
  if [ -z "$password" ]; then # an optional user left unset: it exists, and nobody can log in as it
    printf 'user %s reset off\n' "$name" >>"$tmp"
    continue
  fi
  # printf is a builtin of dash and busybox ash: the password never is an argument of a process.
  printf 'user %s resetpass >%s %s\n' "$name" "$password" "$rules" >>"$tmp"
done <"$conf_dir/users.acl"
mv -f "$tmp" "$acl_file"

exec redis-server "$conf_dir/redis.conf" --aclfile "$acl_file" "$@"
