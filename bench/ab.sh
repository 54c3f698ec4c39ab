#!/usr/bin/env bash
# ab.sh - like-for-like CPU comparison of two aegis configurations, interleaved.
#
#   bench/ab.sh A.toml.tmpl B.toml.tmpl      # templates in the peers.sh format
#   A_BIN=/tmp/a B_BIN=/tmp/b bench/ab.sh T.toml.tmpl T.toml.tmpl   # two binaries
#   B_ENV="GOGC=400" bench/ab.sh T.toml.tmpl T.toml.tmpl          # two environments
#
# Builds aegis and ../shared/bench/backend, renders both templates (A on ports
# 25xxx, B on 26xxx, backend on 127.0.0.1:18080), runs both proxies pinned to
# core 0 (only one is loaded at a time) with the backend and the load generator
# on core 1, and alternates wrk (h1, 64 connections) and h2load (h2c, 8x8) rounds
# between them. Prints proxy CPU seconds per 1,000 requests per round and the
# means. Needs wrk, h2load (nghttp2-client), openssl, taskset, curl. Loopback only;
# every process it starts is stopped by PID on exit.
set -euo pipefail
A=${1:?template A}; B=${2:?template B}
ROUNDS=${ROUNDS:-5}; DUR=${DUR:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RUN=$(mktemp -d /tmp/aegis-ab.XXXXXX)
CLK=$(getconf CLK_TCK)
(cd "$HERE" && go build -o "$RUN/aegis" ./cmd/aegis)
ABIN=${A_BIN:-$RUN/aegis}; BBIN=${B_BIN:-$RUN/aegis}
(cd "$HERE/../shared/bench/backend" && go build -o "$RUN/backend" main.go)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$RUN/key.pem" \
  -out "$RUN/cert.pem" -days 2 -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
render() { sed -e "s#@RUN@#$RUN#g; s#@ADDR@#127.0.0.1#g; s#@BACKEND@#127.0.0.1:18080#g" \
  -e "s#@P_H1@#${2}080#g; s#@P_H2C@#${2}081#g; s#@P_TLS@#${2}443#g; s#@P_ADMIN@#${2}090#g" "$1"; }
render "$A" 25 > "$RUN/a.toml"; render "$B" 26 > "$RUN/b.toml"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT
taskset -c 1 env GOMAXPROCS=1 "$RUN/backend" -addr 127.0.0.1:18080 >/dev/null 2>&1 & PIDS+=($!)
taskset -c 0 env GOMAXPROCS=1 ${A_ENV:-} "$ABIN" run --config "$RUN/a.toml" >/dev/null 2>&1 & PA=$!; PIDS+=($PA)
taskset -c 0 env GOMAXPROCS=1 ${B_ENV:-} "$BBIN" run --config "$RUN/b.toml" >/dev/null 2>&1 & PB=$!; PIDS+=($PB)
for cpu in 0 1; do taskset -c $cpu chrt --idle 0 sh -c 'while :; do :; done' & PIDS+=($!); done
sleep 2
ticks() { local line rest; read -r line < "/proc/$1/stat"; rest=${line##*) }; set -- $rest; echo $(( ${12} + ${13} )); }
for p in 25 26; do curl -fs -o /dev/null "http://127.0.0.1:${p}080/"; done
for ((r = 1; r <= ROUNDS; r++)); do
  for v in A:$PA:25 B:$PB:26; do
    IFS=: read -r name pid port <<< "$v"
    for proto in h1 h2c; do
      t0=$(ticks "$pid")
      if [ "$proto" = h1 ]; then
        reqs=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" "http://127.0.0.1:${port}080/" | awk '/requests in/{print $1}')
      else
        reqs=$(taskset -c 1 h2load -t1 -c8 -m8 -D "$DUR" "http://127.0.0.1:${port}081/" 2>/dev/null | awk '/^requests:/{print $8}')
      fi
      t1=$(ticks "$pid")
      awk -v n="$name" -v pr="$proto" -v r="$r" -v t=$((t1 - t0)) -v q="$reqs" -v h="$CLK" \
        'BEGIN{printf "%s\t%s\t%d\t%d\t%.4f\n", n, pr, r, q, t/h/(q/1000)}'
    done
  done
done | tee "$RUN/results.tsv" | awk -F'\t' '{print; s[$1" "$2]+=$5; n[$1" "$2]++}
  END{for (k in s) printf "mean %s: %.4f vCPU-s per 1k requests\n", k, s[k]/n[k]}'
