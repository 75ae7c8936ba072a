#include "core/run.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace gpuq {

const char* ToString(RunState state) {
  switch (state) {
    case RunState::kWaiting: return "waiting";
    case RunState::kPending: return "pending";
    case RunState::kProcessing: return "processing";
    case RunState::kCompleted: return "completed";
    case RunState::kFailed: return "failed";
    case RunState::kCancelled: return "cancelled";
  }
  return "pending";
}

std::optional<RunState> ParseRunState(std::string_view word) {
  for (RunState s : {RunState::kWaiting, RunState::kPending, RunState::kProcessing,
                     RunState::kCompleted, RunState::kFailed, RunState::kCancelled}) {
    if (word == ToString(s)) return s;
  }
  return std::nullopt;
}

bool IsFinished(RunState state) {
  return state == RunState::kCompleted || state == RunState::kFailed ||
         state == RunState::kCancelled;
}

bool CanTransition(RunState from, RunState to) {
  using S = RunState;
  switch (from) {
    case S::kWaiting: return to == S::kPending || to == S::kFailed || to == S::kCancelled;
    case S::kPending: return to == S::kProcessing || to == S::kCancelled || to == S::kFailed;
    case S::kProcessing:
      return to == S::kCompleted || to == S::kFailed || to == S::kPending || to == S::kCancelled;
    case S::kCompleted: return false;
    case S::kFailed:
    case S::kCancelled: return to == S::kPending;
  }
  return false;
}

std::string LogPath(std::string_view run_id, int attempt) {
  return fmt::format("runs/{}/logs/attempt-{}.log", run_id, attempt);
}

std::string LogPath(const Run& run) {
  return run.attempts > 0 ? LogPath(run.id, run.attempts) : std::string();
}

namespace {
Json OptionalString(const std::optional<std::string>& s) { return s ? Json(*s) : Json(nullptr); }
Json OptionalTime(const std::optional<TimePoint>& t) {
  return t ? Json(FormatTime(*t)) : Json(nullptr);
}
}  // namespace

Json ToJson(const Run& run) {
  Json progress = Json::object();
  progress["fraction"] = run.progress.fraction ? Json(*run.progress.fraction) : Json(nullptr);
  progress["message"] = run.progress.message;
  std::string log_path = LogPath(run);
  return Json{
      {"task_id", run.id},
      {"id", run.id},
      {"type", run.type},
      {"priority", run.priority},
      {"status", ToString(run.state)},
      {"payload", run.payload},
      {"result", run.result},
      {"error", OptionalString(run.error)},
      {"parent_run_id", OptionalString(run.parent_run_id)},
      {"depends_on", run.depends_on},
      {"attempts", run.attempts},
      {"max_attempts", run.max_attempts},
      {"timeout_s", run.timeout_s},
      {"progress", std::move(progress)},
      {"waiting_reason", OptionalString(run.waiting_reason)},
      {"worker", OptionalString(run.worker)},
      {"gpu", OptionalString(run.gpu)},
      {"created_at", FormatTime(run.created_at)},
      {"started_at", OptionalTime(run.started_at)},
      {"finished_at", OptionalTime(run.finished_at)},
      {"cancel_requested", run.cancel_requested},
      {"log_path", log_path.empty() ? Json(nullptr) : Json(log_path)},
      {"files", run.files},
  };
}

Millis RetryBackoff(int attempts) {
  int exponent = std::clamp(attempts - 1, 0, 20);
  long long ms = 2000LL << exponent;
  return Millis(std::min(ms, 300'000LL));
}

}  // namespace gpuq
