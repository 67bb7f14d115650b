#!/usr/bin/env bash
# The local agent image's entrypoint, shaped like the stock buildkite/agent image's
# (packaging/docker/*/entrypoint.sh in github.com/buildkite/agent/v3@v3.138.3): run the scripts in
# /docker-entrypoint.d, then tini as PID 1 runs buildkite-agent with the container's arguments.
# The stock image puts ssh-env-config.sh between tini and the agent (it turns SSH_* variables into
# keys); Scaledkite's workers pass git SSH keys as files instead, so it is left out here.
set -euo pipefail
if [[ -d /docker-entrypoint.d ]]; then
  echo "Executing scripts in /docker-entrypoint.d"
  run-parts --exit-on-error /docker-entrypoint.d
fi
exec /usr/bin/tini -- /usr/local/bin/buildkite-agent "$@"
