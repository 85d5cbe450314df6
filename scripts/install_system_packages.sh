#!/usr/bin/env bash
# System packages the project's services and tests use: PostgreSQL 15 with pgSphere and q3c (the
# archive at scale), STILTS (TAP conformance checks) and Chromium with its driver (the viewer's tests).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
PACKAGES=(postgresql-15 postgresql-client-15 postgresql-15-pgsphere postgresql-15-q3c stilts chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's pgSphere 1.1.1 script declares two obsolete MOC-compatibility '@' operators that PostgreSQL
# 15.x's stricter commutator check rejects ("commutator operator @> is already the commutator of
# operator <@"); upstream pgSphere removed them in 1.4. Drop that block from the installed script.
for script in /usr/share/postgresql/15/extension/pg_sphere--*.sql; do
    [ -f "$script" ] || continue
    if grep -q "backwards-compatible operators for GAVO DaCHS" "$script"; then
        $SUDO python3 - "$script" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
start = text.find("-- a minimal set of backwards-compatible operators for GAVO DaCHS")
if start < 0:
    start = text.find("backwards-compatible operators for GAVO DaCHS")
    start = text.rfind("\n", 0, start) + 1
# the block ends at the next blank-line-separated section that is not part of it: cut up to the end
# of the last CREATE OPERATOR statement that mentions the compatibility '@' operators
end = start
for m in re.finditer(r"CREATE OPERATOR @ \(.*?\);", text[start:], flags=re.S):
    end = start + m.end()
if end > start:
    open(path, "w").write(text[:start] + text[end:])
PY
    fi
done
