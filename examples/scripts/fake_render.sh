#!/bin/sh
# A stand-in for a render job: reports progress the way gpuq's command connector reads it
# (a stdout line "GPUQ_PROGRESS <fraction> <message>") and writes its output into the run dir
# (the working directory).
set -eu
frames=${1:-10}
i=1
while [ "$i" -le "$frames" ]; do
  echo "rendering frame $i/$frames"
  echo "frame $i" >> frames.txt
  echo "GPUQ_PROGRESS $(awk "BEGIN{print $i/$frames}") frame $i/$frames"
  sleep 0.1
  i=$((i + 1))
done
echo "done: $frames frames"
