#pragma once
// A real child process for tests: argv (no shell), its own process group, output to a file,
// and death with the test process (PR_SET_PDEATHSIG) so nothing outlives a test.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gpuq::testing {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the extra environment; stdout+stderr go to `output`.
  ChildProcess(std::vector<std::string> argv, std::filesystem::path output,
               std::map<std::string, std::string> env = {});
  ~ChildProcess();  // SIGKILLs the group if still running, then reaps
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig);  // to the whole process group
  // Waits for exit up to `deadline`; returns the exit status (128+signal when killed) or
  // nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds deadline = std::chrono::seconds(60));
  bool Running();
  std::string Output() const;  // what it has written so far

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path output_;
};

// True while `pid` exists and is not a zombie waiting for whoever inherited it.
bool ProcessAlive(pid_t pid);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
int FreePort();

// Path of the built gpuq binary (build/gpuq of this build tree).
std::filesystem::path GpuqBinary();

}  // namespace gpuq::testing
