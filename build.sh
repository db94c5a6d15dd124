#!/usr/bin/env bash
# memif-go's one entry point. libmemif is an installed system library: this
# script finds it, it never builds it.
# Three modules: the binding (., what importers get), the examples and tools
# (examples/, with gopacket and gonum plot) and the gopacket adapter
# (memifpacket/). Every command covers all three.
#   ./build.sh            build every module, the examples into ./bin
#   ./build.sh test       gofmt check, go vet, go test -race in every module, a short fuzzing run
#   ./build.sh demo [..]  run the loopback demo (flags go to examples/loopback)
#   ./build.sh soak       the long tests (more cycles and packets) and a long fuzzing run
#   ./build.sh bench      examples/bench against its C twin, table and plot
#   ./build.sh floor      go vet and go test -race of the binding with the oldest Go it supports
#   ./build.sh asan [..]  the loopback, hostile and misuse tests under AddressSanitizer
#                         (go test -asan), against an ASan build of libmemif that you
#                         installed under $LIBMEMIF_ASAN_PREFIX (default /opt/libmemif-asan)
set -euo pipefail
cd "$(dirname "$0")"

# --- find libmemif: LIBMEMIF_PREFIX, the standard paths, or include/memif (the layout of FD.io's old libmemif-dev) ---
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
    echo "build.sh: libmemif 4.0 not found (need libmemif.h and libmemif.so): build and install FD.io VPP extras/libmemif v26.06 as README says (set LIBMEMIF_PREFIX if not under /usr or /usr/local)" >&2
    exit 1
  fi
  export CGO_ENABLED=1
  export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -I$inc"
  export CGO_LDFLAGS="${CGO_LDFLAGS:-} -L$lib -Wl,-rpath,$lib"
}

cmd="${1:-build}"
[ $# -gt 0 ] && shift
find_libmemif

# in_modules runs a command in the root module, then in each nested module
# (own go.mod, so ./... in the root skips them).
in_modules() {
  "$@"
  local m
  for m in examples memifpacket; do (cd "$m" && "$@"); done
}

case "$cmd" in
  build)
    in_modules go build ./...
    mkdir -p bin
    for d in examples/*/; do
      [ -f "$d/main.go" ] && (cd examples && go build -o "../bin/$(basename "$d")" "./$(basename "$d")")
    done
    echo "built:" bin/*
    ;;
  test)
    unformatted=$(gofmt -l .)
    if [ -n "$unformatted" ]; then echo "gofmt needed on: $unformatted" >&2; exit 1; fi
    in_modules go vet ./...
    in_modules go test -race -count=1 -timeout 20m ./... "$@"
    # The opt-in eventfd read skip (readskip.c), with the waits and interrupts it touches.
    go vet -tags memif_readskip .
    go test -race -count=1 -timeout 10m -tags memif_readskip -run 'ReadSkip|Wait|Interrupt|Reader|Poll' . "$@"
    # The guard against hostile peers, fuzzed briefly (soak fuzzes longer).
    # A count, not a duration: Go before 1.27 can fail a duration run at its
    # deadline with "context deadline exceeded" (golang/go#75804).
    go test -run '^$' -fuzz '^FuzzGuardMaster$' -fuzztime "${MEMIF_FUZZTIME:-30000x}" .
    ;;
  demo)
    cd examples && go run ./loopback "$@"
    ;;
  bench)
    # Go bench and its C twin, alternately, per scenario; table, bench/results.json, docs/bench.png.
    mkdir -p bin docs
    # shellcheck disable=SC2086 # the flags are several words
    cc -O2 -o bin/memif_bench_c bench/c/memif_bench.c $CGO_CFLAGS $CGO_LDFLAGS -lmemif -lpthread
    # The same twin calling the binding's C layer per burst (bench/c/checks.h), as
    # the default build of the binding (no memif_readskip): the same work as Go.
    # shellcheck disable=SC2086
    cc -O2 -DMEMIF_BENCH_CHECKS -o bin/memif_bench_c_checks bench/c/memif_bench.c own.c readskip.c $CGO_CFLAGS $CGO_LDFLAGS -lmemif -lpthread
    # Built in the examples module, run from here: their default paths are this folder's.
    (cd examples && go build -o ../bin/ ./bench ./bench/compare ./bench/plot)
    bin/compare -go bin/bench -c bin/memif_bench_c -cchecks bin/memif_bench_c_checks -out bench/results.json "$@"
    bin/plot -in bench/results.json -out docs/bench.png
    ;;
  soak)
    MEMIF_SOAK=1 in_modules go test -count=1 -timeout 60m -run 'Cycles|Traffic|Queues|Chained' ./... "$@"
    go test -run '^$' -fuzz '^FuzzGuardMaster$' -fuzztime "${MEMIF_FUZZTIME:-3000000x}" -timeout 60m .
    ;;
  floor)
    # The oldest Go the binding supports is go.mod's go line: GOTOOLCHAIN
    # fetches that exact release as a module. Only the root module: the
    # examples' go line is set by their dependencies (gopacket needs 1.25).
    v="go$(go list -m -f '{{.GoVersion}}')"
    GOTOOLCHAIN="$v" go version
    GOTOOLCHAIN="$v" go vet ./...
    GOTOOLCHAIN="$v" go test -race -count=1 -timeout 20m ./... "$@"
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
    # Allocation counts mean nothing under ASan's instrumentation: skipped.
    go test -asan -count=1 -timeout 20m -skip 'Allocs|AllocationFree' \
      -run 'Own|Forward|RxWait|Batch|Master|Endpoint|Hostile|Handshake[^C]|PeerGone|ResetBehind|PendingCap|AllowUIDs|Loop|StaleSocket|ConcurrentSockets|TxMisuse|NilReceivers|DeleteInside|ViewsAfter|RefillQueueExact|DescriptorStats|Traffic|FourQueues|Chained|Fast|ZeroCopy|SetNextFree|Connect|Interrupt|ExternalRegion|DeleteWhile' \
      . "$@"
    ;;
  *)
    echo "usage: ./build.sh [build|test|demo|soak|bench|floor|asan]" >&2; exit 2
    ;;
esac
