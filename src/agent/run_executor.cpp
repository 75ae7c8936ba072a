#include "agent/run_executor.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

namespace gpuq::agent {

namespace {

// Creates <run_dir>/logs. Two mkdir calls in the common case (runs/ exists); the general
// create_directories, which stats every level first, only when runs/ is missing.
void MakeRunDirs(const std::filesystem::path &run_dir, std::error_code &ec) {
  std::filesystem::path logs = run_dir / "logs";
  if ((::mkdir(run_dir.c_str(), 0755) == 0 || errno == EEXIST) &&
      (::mkdir(logs.c_str(), 0755) == 0 || errno == EEXIST)) {
    ec.clear();
    return;
  }
  std::filesystem::create_directories(logs, ec);
}

}  // namespace

Result<connectors::Outcome> RunAttempt(store::Store &store, const Attempt &attempt) {
  const Run &run = attempt.run;
  std::filesystem::path run_dir = attempt.data_dir / "runs" / run.id;
  std::error_code ec;
  if (attempt.connector.UsesRunDir()) MakeRunDirs(run_dir, ec);
  if (ec) {
    return Error{Errc::kInternal,
                 fmt::format("cannot create {}: {}", run_dir.string(), ec.message())};
  }
  ActiveRun &active = attempt.active;
  connectors::RunContext ctx{
      .run = run,
      .task_type = attempt.type,
      .data_dir = attempt.data_dir,
      .run_dir = run_dir,
      .log_file = attempt.data_dir / LogPath(run),
      .service_url = attempt.service_url,
      .gpu = attempt.gpu,
      .gpu_uuid = attempt.gpu_uuid,
      .stop = active.stop_token(),
      .report_progress = [&store, &active](const Progress &p) { active.ReportProgress(store, p); }};
  try {
    return attempt.connector.Execute(ctx);
  } catch (const std::exception &e) {  // a connector bug must not take the agent down
    return Error{Errc::kInternal, fmt::format("connector threw: {}", e.what())};
  }
}

void FinishAttempt(store::Store &store_, const std::string &worker, const Run &run,
                   ActiveRun &active, Result<connectors::Outcome> outcome) {
  const std::string &id = run.id;
  long long token = active.token();
  auto warn_on_error = [&id](const char *what, const Error &error) {
    spdlog::warn("{} not recorded run={} error={}", what, id, error.message);
  };
  if (outcome) {
    if (auto last = active.TakePendingProgress()) (void)store_.ReportProgress(id, token, *last);
    // A run that finished before it noticed a stop is done: say so. With a lost
    // lease the store refuses the stale token and the run stays with its new
    // owner.
    auto done = store_.Complete(id, token, outcome.value().result, outcome.value().files);
    if (done) {
      spdlog::info("run completed run={} worker={}", id, worker);
    } else if (done.error().code == Errc::kConflict) {
      spdlog::info("run finished after its lease was lost run={}", id);
    } else {
      warn_on_error("completion", done.error());
    }
    return;
  }
  const Error &error = outcome.error();
  switch (active.reason()) {
    case StopReason::kCancelled: {
      auto done = store_.MarkCancelled(id, token);
      if (done) {
        spdlog::info("run cancelled run={} worker={}", id, worker);
      } else {
        warn_on_error("cancellation", done.error());
      }
      return;
    }
    case StopReason::kLeaseLost:
      // Someone else may hold it now; any write of ours would carry a stale
      // token.
      spdlog::info("run abandoned after lease loss run={} worker={}", id, worker);
      return;
    case StopReason::kDrain:
    case StopReason::kRequeue: {
      auto done = store_.Release(id, token);
      if (done) {
        spdlog::info("run given back run={} worker={} why={}", id, worker,
                     active.reason() == StopReason::kDrain ? "drain" : "service stopped");
      } else {
        warn_on_error("release", done.error());
      }
      return;
    }
    case StopReason::kTimedOut: {
      std::string message = fmt::format("timed out after {} s", run.timeout_s);
      auto done = store_.Fail(id, token, message, /*retryable=*/false);
      if (done) {
        spdlog::info("run failed run={} worker={} error=\"{}\"", id, worker, message);
      } else {
        warn_on_error("failure", done.error());
      }
      return;
    }
    case StopReason::kNone: {
      bool retryable = error.code == Errc::kUnavailable || error.code == Errc::kInternal;
      auto done = store_.Fail(id, token, error.message, retryable);
      if (done) {
        spdlog::info("run failed run={} worker={} retrying={} error=\"{}\"", id, worker,
                     done.value() == store::FailOutcome::kRetrying, error.message);
      } else {
        warn_on_error("failure", done.error());
      }
      return;
    }
  }
}

}  // namespace gpuq::agent
