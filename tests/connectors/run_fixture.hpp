#pragma once
// A run dir, log file, stop source and progress recorder for driving one connector attempt.
#include <fstream>
#include <mutex>
#include <sstream>
#include <stop_token>
#include <vector>

#include "connectors/connector.hpp"
#include "core/ids.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::connectors {

// A task type by assignment: designated initializers that skip fields warn on GCC 12.
inline TaskType MakeType(std::string name, std::string connector,
                         std::vector<std::string> argv = {},
                         std::map<std::string, std::string> env = {}) {
  TaskType type;
  type.name = std::move(name);
  type.connector = std::move(connector);
  type.argv = std::move(argv);
  type.env = std::move(env);
  return type;
}

class RunFixture {
 public:
  explicit RunFixture(Json payload, TaskType type = TaskType{}) : type_(std::move(type)) {
    run_.id = NewUuid();
    run_.type = type_.name;
    run_.payload = std::move(payload);
    run_.attempts = 1;
    data_dir_ = dir_.path();
    run_dir_ = data_dir_ / "runs" / run_.id;
    std::filesystem::create_directories(run_dir_ / "logs");
    log_file_ = run_dir_ / "logs" / "attempt-1.log";
  }

  RunContext Context() {
    return RunContext{.run = run_,
                      .task_type = type_,
                      .data_dir = data_dir_,
                      .run_dir = run_dir_,
                      .log_file = log_file_,
                      .stop = stop_.get_token(),
                      .report_progress = [this](const Progress& p) {
                        std::lock_guard lock(mutex_);
                        progress_.push_back(p);
                      }};
  }

  Result<Outcome> Execute(Connector& connector) {
    RunContext ctx = Context();
    return connector.Execute(ctx);
  }

  std::string Log() const {
    std::ifstream in(log_file_);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }

  std::vector<Progress> progress() {
    std::lock_guard lock(mutex_);
    return progress_;
  }

  std::stop_source& stop() { return stop_; }
  const Run& run() const { return run_; }
  const std::filesystem::path& run_dir() const { return run_dir_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }

 private:
  testing::TempDir dir_;
  TaskType type_;
  Run run_;
  std::filesystem::path data_dir_, run_dir_, log_file_;
  std::stop_source stop_;
  std::mutex mutex_;
  std::vector<Progress> progress_;
};

}  // namespace gpuq::connectors
