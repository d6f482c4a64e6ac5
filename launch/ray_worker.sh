#!/usr/bin/env bash
# Join a Ray worker node to the head started by launch/ray_head.sh.
#
#   launch/ray_worker.sh HEAD_IP:6379                                  # all CPUs/GPUs of this node
#   RL_NODE_RESOURCES='{"rollout_node": 1}' launch/ray_worker.sh HEAD_IP:6379
#   launch/ray_worker.sh HEAD_IP:6379 --num-gpus 8 --block             # extra arguments go to `ray start`
#
# RL_NODE_RESOURCES tags the node with custom resources; a role whose config asks for them
# (rollout.resources / reward.resources / learner.resources, e.g. {rollout_node: 1}) is placed only on
# nodes that have them (docs/cluster.md). The node needs the cluster token (RAY_AUTH_MODE=token and
# ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN) and the same Python environment as the head.
set -euo pipefail

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: launch/ray_worker.sh HEAD_IP:PORT [ray start arguments...]" >&2
  exit 2
fi
HEAD=$1
shift
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ]; then
  echo "ray_worker: no cluster token: copy the head's token file to ${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" \
       "(or set RAY_AUTH_TOKEN), or start both head and workers with RAY_AUTH_MODE=disabled" >&2
  exit 2
fi

ARGS=(--address="$HEAD" --disable-usage-stats)
if [ -n "${RL_NODE_RESOURCES:-}" ]; then
  ARGS+=(--resources="$RL_NODE_RESOURCES")
fi
exec ray start "${ARGS[@]}" "$@"
