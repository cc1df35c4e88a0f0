#!/usr/bin/env bash
# Container entry point. `serve` (the default) runs the Dagster daemon (schedules, sensors, the run
# queue and its concurrency pools) beside the webserver; any other command runs as given, e.g.
# `lpt fetch` or `dagster job execute -m lpt_dagster.definitions -j langptune_pipeline`.
set -euo pipefail

# Run from the project root: workspace.yaml and the recipes are found relative to it.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The instance settings come with the image (deploy/docker-compose.yaml mounts its own over
# /app/dagster.yaml); the instance's storage lives in the work-folder volume. A deployment that
# mounts its own dagster.yaml into DAGSTER_HOME (a Kubernetes ConfigMap, read-only) keeps it, and a
# Kubernetes run pod, which gets its instance from the run launcher, may have a DAGSTER_HOME it
# cannot create: neither needs the link.
if [[ ! -e "$DAGSTER_HOME/dagster.yaml" ]] && mkdir -p "$DAGSTER_HOME" 2>/dev/null; then
    ln -sf "$PWD/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
fi

if [[ "${1:-serve}" != "serve" ]]; then
    exec "$@"
fi

dagster-daemon run -w workspace.yaml &
daemon=$!
dagster-webserver -h 0.0.0.0 -p "${DAGSTER_PORT:-3000}" -w workspace.yaml &
webserver=$!
trap 'kill -TERM "$daemon" "$webserver" 2>/dev/null || true' TERM INT

# When either process ends, stop the other and exit with its status, so the container's restart
# policy applies instead of a UI running with no daemon behind it (nothing scheduled would start).
set +e
wait -n "$daemon" "$webserver"
status=$?
kill -TERM "$daemon" "$webserver" 2>/dev/null
wait
exit "$status"
