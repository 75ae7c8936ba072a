#pragma once
// A run: one GPU (or CPU) operation, its state and its legal transitions.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/clock.hpp"

namespace gpuq {

using Json = nlohmann::json;

// The wire words of DESIGN.md. Never "running".
enum class RunState { kWaiting, kPending, kProcessing, kCompleted, kFailed, kCancelled };

const char* ToString(RunState state);
std::optional<RunState> ParseRunState(std::string_view word);
bool IsFinished(RunState state);  // completed, failed or cancelled

// The life cycle of DESIGN.md "A run's life":
//   waiting -> pending (parents done) | failed (a parent failed) | cancelled
//   pending -> processing (claimed) | cancelled
//   processing -> completed | failed | pending (lease lost, retry, drain) | cancelled
//   failed | cancelled -> pending (explicit retry)
bool CanTransition(RunState from, RunState to);

struct Progress {
  std::optional<double> fraction;  // 0..1
  std::string message;
};

struct Run {
  std::string id;  // UUIDv4
  std::string type;
  int priority = 50;
  RunState state = RunState::kPending;
  Json payload = Json::object();
  Json result;  // null until completed: the notes' `outputs`
  std::optional<std::string> error;
  std::optional<std::string> parent_run_id;
  std::vector<std::string> depends_on;
  int attempts = 0;  // incremented by every claim
  int max_attempts = 3;
  int timeout_s = 3600;
  Progress progress;
  std::optional<std::string> waiting_reason;
  std::optional<std::string> worker;  // "host-a/cpu0"
  std::optional<std::string> gpu;     // "host-a:0"
  std::optional<std::string> idempotency_key;
  TimePoint created_at{};
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
  std::optional<TimePoint> not_before;  // retry backoff: not claimable before this
  bool cancel_requested = false;        // a processing run whose worker must stop it
  std::vector<std::string> files;       // paths relative to data_dir: "runs/<id>/out.png"
};

// "runs/<id>/logs/attempt-<n>.log", relative to the data dir; empty before the first claim.
std::string LogPath(const Run& run);
std::string LogPath(std::string_view run_id, int attempt);

// The run as JSON, exactly DESIGN.md's shape (task_id and id are the same).
Json ToJson(const Run& run);

// Delay before retry number `attempts` (1-based): 2 s doubling, capped at 5 minutes.
Millis RetryBackoff(int attempts);

}  // namespace gpuq
