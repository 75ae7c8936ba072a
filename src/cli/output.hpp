#pragma once
// How the CLI prints: aligned tables, one-line errors, exit codes.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace gpuq::cli {

// Exit codes: 0 ok, 1 the run failed or was cancelled, 2 bad input or config,
// 3 not found, 4 conflict, 5 server unreachable or unavailable, 6 auth, 7 timeout, 8 other.
int ToExitCode(Errc code);

// Prints "gpuq: <message>" to stderr and returns ToExitCode(error.code).
int Fail(const Error& error);

// Columns padded to their widest cell; the first row is the header.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows);

// One line for a run: "<id> <type> <status> <progress>".
std::string ProgressLine(const nlohmann::json& run);

// Human summary of a run (gpuq status).
std::string DescribeRun(const nlohmann::json& run);

}  // namespace gpuq::cli
