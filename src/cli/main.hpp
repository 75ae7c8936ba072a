#pragma once

namespace gpuq::cli {
// The `gpuq` command line: serve, agent, submit, status, runs, logs, cancel, retry, fetch,
// check-config, gpu status, service start|stop|logs, phase. Returns the process exit code.
int Main(int argc, char** argv);
}  // namespace gpuq::cli
