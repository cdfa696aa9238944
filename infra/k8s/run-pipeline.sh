#!/usr/bin/env bash
# Run the pipeline's SparkApplications one after another, in the order of spark/kustomization.yaml, each
# waiting for the previous to complete (spark-operator runs whatever is applied at once, so order is ours).
#   infra/k8s/run-pipeline.sh [--from STAGE] [--dry-run]      (namespace: $NAMESPACE, default trialpanorama)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAMESPACE="${NAMESPACE:-trialpanorama}"
DRY_RUN="${DRY_RUN:-0}" FROM="" TIMEOUT_S="${TIMEOUT_S:-86400}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --from) FROM="$2"; shift ;;
    *) echo "run-pipeline.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
run() { echo "+ $*"; if [ "$DRY_RUN" != 1 ]; then "$@"; fi; }

mapfile -t stages < <(sed -n 's/^- \(.*\)\.yaml$/\1/p' "$HERE/spark/kustomization.yaml")
started=0; [ -z "$FROM" ] && started=1
for stage in "${stages[@]}"; do
  [ "$stage" = "$FROM" ] && started=1
  [ "$started" = 1 ] || continue
  run kubectl -n "$NAMESPACE" delete sparkapplication "$stage" --ignore-not-found
  run kubectl -n "$NAMESPACE" apply -f "$HERE/spark/$stage.yaml"
  [ "$DRY_RUN" = 1 ] && continue
  deadline=$((SECONDS + TIMEOUT_S))
  while :; do
    state="$(kubectl -n "$NAMESPACE" get sparkapplication "$stage" -o jsonpath='{.status.applicationState.state}' || true)"
    case "$state" in
      COMPLETED) echo "$stage: COMPLETED"; break ;;
      FAILED|SUBMISSION_FAILED) echo "$stage: $state" >&2; exit 1 ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || { echo "$stage: timed out in state ${state:-none}" >&2; exit 1; }
    sleep 20
  done
done
