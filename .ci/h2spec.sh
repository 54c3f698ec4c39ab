#!/usr/bin/env bash
# HTTP/2 conformance gate: runs h2spec (RFC 7540/7541) against the TLS (h2)
# and h2c listeners of a running aegis and fails when a test fails that is
# not in .ci/h2spec-allow.txt, or when an allow-listed test now passes (the
# list may only shrink: delete the line).
#
#   .ci/h2spec.sh            # from the repository root or anywhere
#   KEEP=1 .ci/h2spec.sh     # keep the work directory (logs, junit.xml)
#
# h2spec is built from tools/h2spec (its own go.mod pins h2spec and its
# dependencies). Every process started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
allow=$root/.ci/h2spec-allow.txt
work=$(mktemp -d /tmp/aegis-h2spec.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then echo "h2spec: work directory $work" >&2; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

echo "h2spec: building aegis and h2spec"
go build -o "$work/aegis" ./cmd/aegis
(cd tools/h2spec && go build -o "$work/h2spec" github.com/summerwind/h2spec/cmd/h2spec)

# Free loopback ports for the listeners, the admin API and a demo upstream.
read -r p_tls p_h2c p_admin p_up < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')

cat > "$work/aegis.toml" <<TOML
[admin]
address = "127.0.0.1:$p_admin"
[log]
level = "warn"
access = "off"
[shutdown]
grace_period = "2s"

[[listeners]]
name = "h2spec-tls"
address = "127.0.0.1:$p_tls"
protocols = ["h1", "h2"]
  [listeners.tls]
  pq = "prefer"

[[listeners]]
name = "h2spec-h2c"
address = "127.0.0.1:$p_h2c"
protocols = ["h1", "h2c"]

[[routes]]
name = "all"
cluster = "demo"

[[clusters]]
name = "demo"
  [[clusters.endpoints]]
  address = "127.0.0.1:$p_up"
  region = "eu-south"

[demo]
upstreams = [{ address = "127.0.0.1:$p_up", region = "eu-south" }]
TOML

"$work/aegis" run --config "$work/aegis.toml" > "$work/aegis.out" 2> "$work/aegis.err" &
pids+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$p_admin/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "h2spec: aegis exited:" >&2; cat "$work/aegis.err" >&2; exit 1; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$p_admin/readyz" >/dev/null || { echo "h2spec: aegis not ready" >&2; exit 1; }

status=0
for mode in tls h2c; do
  port=$p_tls; flags=(-t -k)
  [ "$mode" = h2c ] && { port=$p_h2c; flags=(); }
  set +e
  "$work/h2spec" -h 127.0.0.1 -p "$port" "${flags[@]}" -o 3 -j "$work/$mode.xml" > "$work/$mode.txt" 2>&1
  set -e
  echo "h2spec $mode: $(tail -n 1 "$work/$mode.txt")"
  ok=1
  python3 - "$work/$mode.xml" "$allow" "$mode" <<'PY' || ok=0
import sys, xml.etree.ElementTree as ET
junit, allow, mode = sys.argv[1:]
failed = []
for suite in ET.parse(junit).getroot().iter('testsuite'):
    pkg = suite.get('package', '')                      # e.g. "http2/6.5.3"
    for i, tc in enumerate(suite.iter('testcase'), 1):
        if tc.find('failure') is not None or tc.find('error') is not None:
            failed.append(f"{pkg}/{i}")
allowed = set()
for line in open(allow):
    f = line.split('#')[0].split()
    if len(f) == 2 and f[0] in (mode, '*'):
        allowed.add(f[1])
unexpected = [f for f in failed if f not in allowed]
stale = sorted(allowed - set(failed))
print(f"  failed: {' '.join(failed) or 'none'}")
if unexpected:
    print(f"  UNEXPECTED FAILURES ({mode}): {' '.join(unexpected)}")
if stale:
    print(f"  NOW PASSING, remove from {allow} ({mode}): {' '.join(stale)}")
sys.exit(1 if unexpected or stale else 0)
PY
  [ $ok = 1 ] || status=1
done
[ $status = 0 ] && echo "h2spec: gate passed" || echo "h2spec: gate FAILED"
exit $status
