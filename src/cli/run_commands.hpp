#pragma once
// The CLI subcommands that talk to the API about runs. Each returns an exit code.
#include <optional>
#include <string>
#include <vector>

#include "cli/api_client.hpp"

namespace gpuq::cli {

struct SubmitOptions {
  std::string type;
  std::optional<int> priority;
  std::vector<std::string> params;  // "k=v" (string) or "k:=JSON"
  std::string payload;              // a JSON object; params are merged over it
  std::optional<int> timeout_s;
  std::optional<int> max_attempts;
  std::string idempotency_key;
  bool wait = false;
};

// Builds the submit body from the options (payload + params). kInvalidArgument naming the bad
// --param or --payload.
Result<nlohmann::json> BuildSubmitBody(const SubmitOptions& options);

int Submit(const GlobalOptions& global, const SubmitOptions& options);
int Status(const GlobalOptions& global, const std::string& id);
int ListRuns(const GlobalOptions& global, const std::string& status, const std::string& type,
             int limit);
int Logs(const GlobalOptions& global, const std::string& id, bool follow, int attempt);
int Cancel(const GlobalOptions& global, const std::string& id);
int Retry(const GlobalOptions& global, const std::string& id);
int Fetch(const GlobalOptions& global, const std::string& id, const std::string& out_dir);

}  // namespace gpuq::cli
