#!/bin/sh
# Builds the Debian package easfront_<version>_<arch>.deb from this checkout:
# a Release build in BUILD_DIR (default: build-deb at the top), then CPack.
# Needs cmake, ninja-build, dpkg-dev (dpkg-shlibdeps), file and the build
# dependencies of README; prints the package's path last.
#   deploy/debian/build-deb.sh [BUILD_DIR]
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath -m "${1:-$top/build-deb}")

# An existing build directory keeps its generator.
[ -e "$build/CMakeCache.txt" ] || set -- -G Ninja
cmake -S "$top" -B "$build" "$@" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target easfront man
rm -f "$build"/easfront_*.deb
(cd "$build" && cpack -G DEB >"$build/cpack.log") ||
	{ cat "$build/cpack.log" >&2; exit 1; }
ls "$build"/easfront_*.deb
