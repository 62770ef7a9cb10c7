#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): installs the
# Debian packages it needs, then builds and tests easfront four ways:
#   clang -Werror (build only), clang + libFuzzer (each harness fuzzed for
#   EF_FUZZ_SECONDS), ASan+UBSan (unit, replay and integration tests), and
#   gcc -Werror with every test plus valgrind on the unit tests.
# The last thing printed is CTest's summary of the gcc run.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc)
fuzz_seconds=${EF_FUZZ_SECONDS:-30}

packages=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libevent-dev libssl-dev libxml2-dev libldns-dev libcyaml-dev libldap2-dev
  libcmocka-dev libhiredis-dev redis-server openssl curl sslscan valgrind python3 procps iproute2
  mandoc dpkg-dev file adduser ssl-cert systemd
  prometheus chromium nodejs
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# npm, with which the status page's test puts playwright-core into the
# build tree: Debian's package, unless the nodejs here brings its own.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

configure() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S "$top" -B "$top/$dir" -G Ninja "$@" >/dev/null
  cmake --build "$top/$dir" -j "$jobs" >/dev/null
}

quiet_ctest() { # dir, ctest args...: the summary only, everything on failure
  local dir=$1; shift
  if ! ctest --test-dir "$dir" -j "$jobs" --output-on-failure "$@" >"$dir/ctest.log" 2>&1; then
    cat "$dir/ctest.log"
    return 1
  fi
  grep -E "tests passed|tests failed" "$dir/ctest.log"
}

echo "== clang -Werror build"
CC=clang configure build-test/clang

echo "== libFuzzer build: each harness fuzzed for ${fuzz_seconds}s"
CC=clang configure build-test/fuzz -DEF_FUZZ=ON -DEF_FUZZ_SECONDS="$fuzz_seconds" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
quiet_ctest build-test/fuzz -L fuzz

echo "== ASan+UBSan build: unit, replay and integration tests"
CC=clang configure build-test/asan -DEF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=16:malloc_context_size=20 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  quiet_ctest build-test/asan -LE bench

echo "== gcc -Werror build: every test, unit tests under valgrind too"
CC=gcc configure build-test/gcc -DEF_VALGRIND=ON
ctest --test-dir build-test/gcc -j "$jobs" --output-on-failure
