#!/usr/bin/env bash
# Installs the non-Python tools the stack and its tests run: redis-server (Debian's own), and
# Prometheus/promtool/Alertmanager/amtool. Debian bookworm ships Prometheus 2.42 and
# Alertmanager 0.25 (2023), so those two are taken from Debian sid's packages, unpacked into
# .tools/ with dpkg-deb: the system is not touched. Sid moves on: any version within the MAJOR
# version docker-compose.yml pins is accepted (the tests decide whether it works); a drift from
# the pins is a warning, printed with the versions the tests run (native/tool_versions.py).
# STACK_TOOLS_DIR: another folder than .tools/ (e.g. to try a fresh install beside a working one).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tools=${STACK_TOOLS_DIR:-$here/.tools}

# --bench: also Debian's redis_exporter (the exporter benchmark's comparison), unpacked into
# .tools/ like the others: installing the package would start its service.
if [ "${1:-}" = "--bench" ]; then
  "$0"
  [ -x "$tools/bin/prometheus-redis-exporter" ] && exit 0
  mkdir -p "$tools/debs" "$tools/bin" "$tools/root"
  (cd "$tools/debs" && apt-get download -qq prometheus-redis-exporter >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null && (cd "$tools/debs" && apt-get download -qq prometheus-redis-exporter >/dev/null); }
  dpkg-deb -x "$tools"/debs/prometheus-redis-exporter_*.deb "$tools/root"
  ln -sf ../root/usr/bin/prometheus-redis-exporter "$tools/bin/prometheus-redis-exporter"
  echo "install-tools: $("$tools/bin/prometheus-redis-exporter" --version 2>&1 | head -n 1) in .tools/bin"
  exit 0
fi
versions=(python3 "$here/native/tool_versions.py" --compose "$here/docker-compose.yml" --tools "$tools/bin")

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
command -v openssl >/dev/null || need_apt+=(openssl)  # test certificates (exporter TLS)
# RabbitMQ broker tests start private nodes from the package's scripts (/usr/lib/rabbitmq/bin).
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-tools: apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "install-tools: missing commands: ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]}) and run again" >&2
    exit 1
  fi
fi

# Debian builds Alertmanager to read its notification templates from this fixed folder.
am_templates=/usr/share/prometheus/alertmanager
install_am_templates() {
  [ -f "$am_templates/default.tmpl" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$am_templates" && cp "$tools"/root/usr/share/prometheus/alertmanager/*.tmpl "$am_templates/"
  else
    echo "install-tools: Alertmanager needs its templates in $am_templates:" >&2
    echo "  sudo mkdir -p $am_templates && sudo cp $tools/root$am_templates/*.tmpl $am_templates/" >&2
    exit 1
  fi
}

if "${versions[@]}" --quiet; then  # present, and of the pinned major versions
  install_am_templates
  "${versions[@]}"
  exit 0
fi

# A private apt state: Debian's sid index, used only to download the packages.
apt_dir="$tools/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$tools/root" "$tools/bin"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$apt_dir/sources.list"
opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
echo "install-tools: fetching prometheus and alertmanager from Debian sid into $tools"
apt-get "${opts[@]}" update -qq >/dev/null
(cd "$apt_dir/debs" && rm -f ./*.deb && apt-get "${opts[@]}" download -qq prometheus promtool prometheus-alertmanager >/dev/null)
for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$tools/root"; done
for b in prometheus promtool prometheus-alertmanager amtool; do ln -sf "../root/usr/bin/$b" "$tools/bin/$b"; done

"${versions[@]}" || { echo "install-tools: Debian sid's packages are not usable here (see above)" >&2; exit 1; }
install_am_templates
