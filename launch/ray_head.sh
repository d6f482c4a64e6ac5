#!/usr/bin/env bash
# Start the Ray head node for `rl submit` jobs: token authentication on, dashboard + job API on 127.0.0.1.
#
#   launch/ray_head.sh                                # GCS on :6379, job API on http://127.0.0.1:8265
#   launch/ray_head.sh --num-gpus 8 --block           # extra arguments go to `ray start` as they are
#   RL_DASHBOARD_HOST=0.0.0.0 launch/ray_head.sh      # job API on every interface (prints a warning)
#
# Environment (defaults in brackets):
#   RL_RAY_PORT [6379]                GCS port; workers join with launch/ray_worker.sh HEAD_IP:RL_RAY_PORT
#   RL_DASHBOARD_HOST [127.0.0.1]     interface of the dashboard and the job API (submitting a job = running
#                                     code on the cluster). From another machine, tunnel instead of opening
#                                     it: ssh -L 8265:127.0.0.1:8265 HEAD, then rl submit ... --address
#                                     http://127.0.0.1:8265
#   RL_DASHBOARD_PORT [8265]
#   RAY_AUTH_MODE [token]             token: every client, worker and job needs the cluster token;
#                                     disabled: anyone who reaches a Ray port can run code as you
#   RAY_AUTH_TOKEN_PATH [~/.ray/auth_token]   the token file; created (mode 600) if missing. Copy it to every
#                                     worker node and client (or set RAY_AUTH_TOKEN there).
# Ray's GCS and raylet listen on every interface whatever the dashboard host (Ray does not honour
# --node-ip-address=127.0.0.1 for them): firewall RL_RAY_PORT and the worker ports from untrusted networks.
set -euo pipefail

PORT=${RL_RAY_PORT:-6379}
DASH_HOST=${RL_DASHBOARD_HOST:-127.0.0.1}
DASH_PORT=${RL_DASHBOARD_PORT:-8265}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  TOKEN_FILE=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
  if [ ! -s "$TOKEN_FILE" ]; then
    TOKEN=$(python -c 'import secrets; print(secrets.token_hex(32), end="")')  # Ray's own token format
    mkdir -p "$(dirname "$TOKEN_FILE")"
    (umask 077 && printf %s "$TOKEN" > "$TOKEN_FILE")
    echo "ray_head: created the cluster token $TOKEN_FILE; copy it to the workers and clients" >&2
  fi
elif [ "$RAY_AUTH_MODE" = disabled ]; then
  echo "ray_head: WARNING: RAY_AUTH_MODE=disabled: anyone who can reach this machine's Ray ports can run" \
       "code on the cluster. Use it only on a network nobody else can reach." >&2
fi

case "$DASH_HOST" in
  127.0.0.1|localhost|::1) ;;
  *)
    cat >&2 <<EOF
ray_head: ################################################################################################
ray_head: WARNING: the Ray dashboard and job API listen on $DASH_HOST:$DASH_PORT, not only on 127.0.0.1.
ray_head: Whoever reaches that port$( [ "$RAY_AUTH_MODE" = token ] && echo " with the cluster token" ) can submit jobs,
ray_head: i.e. run any code as $(id -un) on every node. Prefer the default (127.0.0.1) and an SSH tunnel;
ray_head: if you must open it, firewall it to trusted machines and keep RAY_AUTH_MODE=token.
ray_head: ################################################################################################
EOF
    ;;
esac

cat >&2 <<EOF
ray_head: workers join with:   launch/ray_worker.sh $(hostname -I 2>/dev/null | awk '{print $1}'):$PORT
ray_head: submit jobs with:    rl submit configs/tiny.yaml --address http://127.0.0.1:$DASH_PORT --wait
EOF
exec ray start --head --port="$PORT" --dashboard-host="$DASH_HOST" --dashboard-port="$DASH_PORT" \
  --disable-usage-stats "$@"
