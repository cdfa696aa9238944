#!/usr/bin/env sh
# Prints the home of a Java 17 JDK: $JAVA_HOME if it is one, else the first Java 17 found in the usual places.
# Spark 4.2 is built and tested for Java 17; a newer default `java` on PATH is not used.
is17() { [ -f "$1/release" ] && grep -q 'JAVA_VERSION="17' "$1/release"; }
if [ -n "${JAVA_HOME:-}" ] && is17 "$JAVA_HOME"; then echo "$JAVA_HOME"; exit 0; fi
for d in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 /usr/lib/jvm/java-17-openjdk \
         /usr/lib/jvm/temurin-17-jdk-amd64 /usr/lib/jvm/temurin-17-jdk /usr/lib/jvm/*17* \
         /Library/Java/JavaVirtualMachines/*17*/Contents/Home; do
  if is17 "$d"; then echo "$d"; exit 0; fi
done
echo "no Java 17 JDK found: install openjdk-17-jdk (Debian/Ubuntu) or set JAVA_HOME" >&2
exit 1
