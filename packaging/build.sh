#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing from
# Debian's packages, configures, builds, and then runs what was asked for.
#
#   packaging/build.sh demo       build, then run the embedded demo
#   packaging/build.sh test       build, then run every test (ctest) but open-ended fuzzing
#   packaging/build.sh fuzz [S]   build, then fuzz each target for S seconds (default: MEMLEND_FUZZ_SECONDS in tests/CMakeLists.txt)
#   packaging/build.sh soak       build, then the soak tests (hundreds of donor failures)
#   packaging/build.sh sanitize   the same tests in an ASan + UBSan build
#   packaging/build.sh bench      build, then run the benchmarks
#   packaging/build.sh package    build, then make the Debian packages (build/memlend_*.deb, build/memlend-dbgsym_*.deb)
#   packaging/build.sh build      only build
#   packaging/build.sh deps       only install the packages
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-build}
shift || true

packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libboost-test-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libsqlite3-dev sqlite3 prometheus-cpp-dev libssl-dev libsystemd-dev
  libdqlite-dev
  libibverbs-dev librdmacm-dev
  libvirt-dev libxml2-dev
  libarchive-dev libcurl4-openssl-dev
  clang libclang-rt-14-dev
  iproute2 procps
)
# Filled in by later areas (metrics, packaging) with the tools their tests call.
if [[ -f "$root/packaging/test-packages.txt" ]]; then
  mapfile -t extra < <(grep -v '^\s*#' "$root/packaging/test-packages.txt" | grep -v '^\s*$')
  packages+=("${extra[@]}")
fi

install_deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "installing: ${missing[*]}"
  local sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

jobs=$(nproc)
# ccache, where a developer has it, shares objects between checkouts of the tree.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$root"
fi
configure_and_build() {
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

case "$what" in
  deps) install_deps ;;
  build) install_deps; configure_and_build "$root/build" ;;
  demo)
    install_deps
    configure_and_build "$root/build"
    "$root/build/memlend" run "$@"
    ;;
  test)
    install_deps
    configure_and_build "$root/build"
    # The fuzzers replay their corpus here (label fuzz); open-ended fuzzing
    # finds different inputs on different machines, so it has its own command,
    # and so do the soak tests (hundreds of donor failures).
    ctest --test-dir "$root/build" --output-on-failure -j "$jobs" -LE 'fuzz-explore|soak' "$@"
    ;;
  fuzz)
    install_deps
    # Without S the default is tests/CMakeLists.txt's, not whatever an earlier
    # `fuzz S` left in the cache, so the two cannot disagree.
    seconds=(-UMEMLEND_FUZZ_SECONDS)
    if [[ $# -gt 0 ]]; then
      [[ $1 =~ ^[1-9][0-9]*$ ]] || { echo "packaging/build.sh fuzz: seconds must be a positive integer" >&2; exit 2; }
      seconds=(-DMEMLEND_FUZZ_SECONDS="$1")
    fi
    configure_and_build "$root/build" "${seconds[@]}"
    # A crash fails its test and leaves the input in build/fuzz/<fuzzer>/crashes/.
    ctest --test-dir "$root/build" --output-on-failure -j "$jobs" -L fuzz-explore
    ;;
  soak)
    install_deps
    configure_and_build "$root/build"
    ctest --test-dir "$root/build" --output-on-failure -L soak "$@"
    ;;
  sanitize)
    install_deps
    configure_and_build "$root/build-sanitize" -DMEMLEND_SANITIZE=ON -DMEMLEND_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
    # The fuzzers are built with ASan and UBSan in every build and run in `test`
    # (-LE fuzz leaves out fuzz-explore too). guest_file_test runs no memlend
    # code but QEMU's, which the sanitizers do not see: once, in `test`, is enough.
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 LSAN_OPTIONS=suppressions="$root/packaging/lsan.supp" \
      ctest --test-dir "$root/build-sanitize" --output-on-failure -j "$jobs" -LE 'fuzz|soak' -E '^guest_file_test$' "$@"
    ;;
  bench)
    install_deps
    configure_and_build "$root/build" -DCMAKE_BUILD_TYPE=Release
    find "$root/build/bench" -type f -name "bench_*" -perm -u+x | sort | while read -r b; do "$b" "$@"; done
    ;;
  package)
    install_deps
    configure_and_build "$root/build" -DCMAKE_BUILD_TYPE=Release
    (cd "$root/build" && cpack -G DEB)
    ;;
  *) echo "usage: packaging/build.sh demo|test|fuzz|soak|sanitize|bench|package|build|deps" >&2; exit 2 ;;
esac
