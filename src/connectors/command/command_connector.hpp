#pragma once
// `command`: runs a local argv (never a shell) for each run.
//
// The argv comes from the task type (`argv = ["ffmpeg", "-i", "{{input}}", ...]`), each element
// filled as text (FillText) against CommandValues(); a task type with an empty argv (the generic
// `command` type) takes payload.argv, an array of strings used as-is. The task type's env values
// are filled the same way.
//
// The child runs in its own process group with cwd = the run dir and env = the agent's
// environment + the task type's env + GPUQ_RUN_ID + GPUQ_RUN_DIR; its stdout and stderr are
// appended to the attempt's log file. A stdout line `GPUQ_PROGRESS <fraction> [message]` is
// reported as progress. Once ctx.stop is requested (the agent requests it on cancel, lost lease,
// timeout and drain: the connector keeps no timer of its own) the group gets SIGTERM, then
// SIGKILL after a 2 s grace. When the command exits, what is left of its group is killed.
//
// Outcome: exit code 0 -> result {"exit_code": 0} and every regular file in the run dir
// (recursively, logs/ excluded) as "runs/<id>/...". Exit code N -> kInvalidArgument "command
// exited with code N: <last output line>"; a signal -> kInvalidArgument "command killed by
// signal SIGX"; exec failure -> kInvalidArgument "cannot execute <argv0>: <reason>"; a stop ->
// kUnavailable "command stopped". Thread-safe: one instance serves every worker.
#include "connectors/command/child.hpp"
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class CommandConnector final : public Connector {
 public:
  explicit CommandConnector(Millis grace = Millis(2'000)) : grace_(grace) {}

  // Every placeholder of the type's argv and env resolves against the payload (and the
  // built-in names); payload.argv is a non-empty array of strings when the type has no argv.
  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

 private:
  Millis grace_;
};

// What argv and env templates may name: the payload's top-level keys, "payload" (the whole
// payload), "run_id", "run_dir", "data_dir" and "attempt" (the built-ins win over payload keys).
Json CommandValues(const Json& payload, const std::string& run_id,
                   const std::filesystem::path& run_dir, const std::filesystem::path& data_dir,
                   int attempt);

// Every regular file under run_dir (recursively; logs/ and symlinks left out), as sorted
// paths relative to data_dir ("runs/<id>/out.png"): a run's output files.
std::vector<std::string> ListRunFiles(const std::filesystem::path& run_dir,
                                      const std::filesystem::path& data_dir);

}  // namespace gpuq::connectors
