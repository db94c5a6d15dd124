#!/usr/bin/env bash
# memif-go's one entry point. libmemif is an installed system library: this
# script finds it, it never builds it.
#   ./build.sh            build the package and the examples into ./bin
#   ./build.sh test       gofmt check, go vet, go test -race ./...
#   ./build.sh demo [..]  run the loopback demo (flags go to examples/loopback)
#   ./build.sh soak       the long tests (more cycles and packets)
#   ./build.sh asan [..]  the loopback, hostile-ring and misuse tests under AddressSanitizer
#                         (go test -asan), against an ASan build of libmemif that you
#                         installed under $LIBMEMIF_ASAN_PREFIX (default /opt/libmemif-asan)
set -euo pipefail
cd "$(dirname "$0")"

# --- find libmemif: LIBMEMIF_PREFIX, the standard paths, or FD.io's libmemif-dev layout ---
find_libmemif() {
  local inc="" lib=""
  local prefixes=()
  [ -n "${LIBMEMIF_PREFIX:-}" ] && prefixes+=("$LIBMEMIF_PREFIX")
  prefixes+=(/usr/local /usr)
  for p in "${prefixes[@]}"; do
    for d in "$p/include" "$p/include/memif"; do
      if [ -z "$inc" ] && [ -f "$d/libmemif.h" ]; then inc="$d"; fi
    done
    for d in "$p/lib" "$p/lib64" "$p/lib/$(gcc -dumpmachine 2>/dev/null || echo x)"; do
      if [ -z "$lib" ] && ls "$d"/libmemif.so* >/dev/null 2>&1; then lib="$d"; fi
    done
  done
  if [ -z "$inc" ] || [ -z "$lib" ]; then
    echo "build.sh: libmemif 4.0 not found (need libmemif.h and libmemif.so): install FD.io's libmemif-dev package, or build FD.io VPP extras/libmemif v26.06 and install it (set LIBMEMIF_PREFIX if not under /usr or /usr/local)" >&2
    exit 1
  fi
  export CGO_ENABLED=1
  export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -I$inc"
  export CGO_LDFLAGS="${CGO_LDFLAGS:-} -L$lib -Wl,-rpath,$lib"
}

cmd="${1:-build}"
[ $# -gt 0 ] && shift
find_libmemif

case "$cmd" in
  build)
    go build ./...
    mkdir -p bin
    for d in examples/*/; do
      [ -f "$d/main.go" ] && go build -o "bin/$(basename "$d")" "./$d"
    done
    echo "built: bin/$(ls bin | tr '\n' ' ')"
    ;;
  test)
    unformatted=$(gofmt -l .)
    if [ -n "$unformatted" ]; then echo "gofmt needed on: $unformatted" >&2; exit 1; fi
    go vet ./...
    go test -race -count=1 -timeout 20m ./... "$@"
    ;;
  demo)
    go run ./examples/loopback "$@"
    ;;
  bench)
    # Go bench and its C twin, alternately, per scenario; table, bench/results.json, docs/bench.png.
    mkdir -p bin docs
    cc -O2 -o bin/memif_bench_c bench/c/memif_bench.c $CGO_CFLAGS $CGO_LDFLAGS -lmemif -lpthread
    go build -o bin/bench ./examples/bench
    go run ./examples/bench/compare -go bin/bench -c bin/memif_bench_c -out bench/results.json "$@"
    go run ./examples/bench/plot -in bench/results.json -out docs/bench.png
    ;;
  soak)
    MEMIF_SOAK=1 go test -count=1 -timeout 60m -run 'Cycles|Traffic|Queues|Chained' ./... "$@"
    ;;
  asan)
    # libmemif built with -fsanitize=address is the user's to provide (this
    # project never builds libmemif): point LIBMEMIF_ASAN_PREFIX at its
    # install prefix (include/libmemif.h, lib/libmemif.so).
    p="${LIBMEMIF_ASAN_PREFIX:-/opt/libmemif-asan}"
    if [ ! -f "$p/include/libmemif.h" ] || ! ls "$p"/lib/libmemif.so* >/dev/null 2>&1; then
      echo "build.sh asan: no ASan libmemif under $p (set LIBMEMIF_ASAN_PREFIX to the prefix of a libmemif v26.06 built with -fsanitize=address)" >&2
      exit 1
    fi
    export CGO_CFLAGS="-O1 -g -fno-omit-frame-pointer -I$p/include"
    export CGO_LDFLAGS="-L$p/lib -Wl,-rpath,$p/lib"
    # Go's runtime does not free everything at exit: leak reports are noise.
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
    go test -asan -count=1 -timeout 20m \
      -run 'Hostile|TxMisuse|NilReceivers|DeleteInside|ViewsAfter|RefillQueueExact|QueueStats|Traffic|FourQueues|Chained|Fast|ZeroCopy|SetNextFree|Connect|Interrupt|ExternalRegion|DeleteWhile' \
      . "$@"
    ;;
  *)
    echo "usage: ./build.sh [build|test|demo|soak|bench|asan]" >&2; exit 2
    ;;
esac
