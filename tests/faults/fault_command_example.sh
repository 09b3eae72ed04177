#!/bin/bash
# An example LOCSTREAM_FAULT_COMMAND, for a cluster started with `locstream broker start --nodes 3 --data-dir DIR`
# (FAULT_DIR=DIR): the suite calls it as `fault_command_example.sh ACTION NODE_ID`. A script for your own cluster maps
# the same five actions to `docker kill|stop|start|pause|unpause`, or to systemd over ssh.
set -e
action=$1; node=$2; pid=$(cat "$FAULT_DIR/node-$node/broker.pid" 2>/dev/null || true)
case $action in
  kill) kill -KILL -- "-$pid" ;;
  stop) kill -TERM -- "-$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done ;;  # a controlled shutdown
  pause) kill -STOP -- "-$pid" ;;
  resume) kill -CONT -- "-$pid" ;;
  start) "$(dirname "$0")/../../.venv/bin/locstream" broker start --data-dir "$FAULT_DIR" ;;
  *) echo "unknown action: $action" >&2; exit 2 ;;
esac
