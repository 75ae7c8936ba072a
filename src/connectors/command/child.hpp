#pragma once
// One child process run to the end: fork/exec of an argv (never a shell) in a new process group,
// its stdout and stderr relayed through one pipe, stopped by signals to the whole group.
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"

namespace gpuq::connectors {

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   // complete environment, "KEY=value"
  std::filesystem::path cwd;
  Millis grace{2'000};  // SIGTERM -> SIGKILL delay once stop is requested
};

struct ChildExit {
  bool signaled = false;  // killed by `signal` rather than exiting with `code`
  int code = 0;
  int signal = 0;
  bool stopped = false;  // `stop` was requested and the group was signalled
};

// This process's environment with `extra` set over it ("KEY=value" each), for ChildSpec::env.
std::vector<std::string> EnvironmentWith(const std::map<std::string, std::string>& extra);

// Runs the child to its end on the calling thread. `on_output` gets stdout+stderr bytes in the
// order the child wrote them. When `stop` is requested the group gets SIGTERM, then SIGKILL
// after `grace`. When the child (the group leader) exits, whatever is left of its group is
// SIGKILLed before the leader is reaped, so no process outlives its run (one that left the
// group with setsid does). Errors: kInvalidArgument "cannot execute <argv0>: <reason>" when
// exec fails; kInternal when a pipe or fork fails.
Result<ChildExit> RunChild(const ChildSpec& spec, std::stop_token stop,
                           const std::function<void(std::string_view)>& on_output);

}  // namespace gpuq::connectors
