#!/usr/bin/env bash
# The image's entrypoint. Spark on Kubernetes (spark-submit --master k8s://, spark-operator) starts pods with
# the first argument `driver` or `executor`, the contract of Spark's own image; we implement it here over the
# pip-installed Spark ($SPARK_HOME -> site-packages/pyspark, which ships the spark-kubernetes jar). Anything
# else runs as given (KubeRay sets its own `ray start` command; `mlflow server ...`; `bash`).
# ENTRYPOINT_DRY_RUN=1 prints the command instead of running it (tests).
set -euo pipefail

SPARK_HOME="${SPARK_HOME:-/opt/spark}"
JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/java-17}"

launch() {
  if [ "${ENTRYPOINT_DRY_RUN:-0}" = 1 ]; then printf '%s\n' "$*"; exit 0; fi
  exec "$@"
}

spark_classpath() {
  local cp="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*"
  [ -n "${SPARK_CONF_DIR:-}" ] && cp="$SPARK_CONF_DIR:$cp"
  [ -n "${HADOOP_CONF_DIR:-}" ] && cp="$HADOOP_CONF_DIR:$cp"
  [ -n "${SPARK_EXTRA_CLASSPATH:-}" ] && cp="$cp:$SPARK_EXTRA_CLASSPATH"
  printf '%s' "$cp"
}

case "${1:-}" in
  driver)
    shift
    launch "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # Java options the scheduler passes as SPARK_JAVA_OPT_0, _1, ... in order.
    java_opts=()
    while IFS= read -r opt; do java_opts+=("$opt"); done < <(
      env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//' || true)
    launch "$JAVA_HOME/bin/java" "${java_opts[@]}" \
      "-Xms${SPARK_EXECUTOR_MEMORY:?}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
      -cp "$(spark_classpath)" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL:?}" \
      --executor-id "${SPARK_EXECUTOR_ID:?}" \
      --cores "${SPARK_EXECUTOR_CORES:?}" \
      --app-id "${SPARK_APPLICATION_ID:?}" \
      --hostname "${SPARK_EXECUTOR_POD_IP:?}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-}"
    ;;
  "")
    launch bash
    ;;
  *)
    launch "$@"
    ;;
esac
