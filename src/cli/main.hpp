#pragma once

namespace gpuq::cli {
// The `gpuq` command line: serve, agent, submit, status, runs, logs, cancel, retry, fetch,
// check-config. Returns the process exit code.
int Main(int argc, char** argv);
}  // namespace gpuq::cli
