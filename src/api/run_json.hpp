#pragma once
// The run JSON of core ToJson(Run), written straight into a string: the hot path of
// GET /task_status/{id} skips building a nlohmann object of two dozen keys only to dump it.
// run_json_test checks that the output parses to exactly ToJson(run).
#include <string>

#include "core/run.hpp"

namespace gpuq::api {

// Appends the run's JSON (compact) to `out`.
void AppendRunJson(const Run& run, std::string& out);

}  // namespace gpuq::api
