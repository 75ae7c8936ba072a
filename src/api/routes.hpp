#pragma once
// Route tables, one function per file, and the helpers they share. Handlers run on an io
// thread: quick point reads (Store::Get) run inline, anything that waits goes through
// RunBlocking(ctx.blocking, ...).
#include <string>
#include <string_view>
#include <vector>

#include "api/context.hpp"
#include "api/message.hpp"
#include "api/router.hpp"
#include "core/gpu_status.hpp"
#include "core/result.hpp"
#include "core/run.hpp"

namespace gpuq::api {

void AddTaskRoutes(Router& router);  // task_routes.cpp: submit, alias, task types
void AddRunRoutes(Router& router);   // run_routes.cpp: status, list, children, cancel, retry
void AddFileRoutes(Router& router);  // files_routes.cpp: run logs, run files, service logs
void AddMetaRoutes(Router& router);  // meta_routes.cpp: health, openapi.json
void AddGpuRoutes(Router& router);   // gpu_routes.cpp: /gpu/status, phases, services, locks

// An agent counts as live when it heartbeated within this (it does so every ~2 s).
inline constexpr Millis kAgentMaxAge{10'000};

// The GPU reports of live agents (store.ListAgents(kAgentMaxAge)), each report's `agent` set to
// the id it heartbeats under; records whose state is not an AgentGpuReport (CPU-only agents)
// are skipped. Locks are left as reported. Blocks: call it on the blocking pool.
Result<std::vector<AgentGpuReport>> LiveGpuReports(store::Store& store);

// Every route, as the server uses them.
Router AllRoutes();

// Compact JSON; invalid UTF-8 in strings is replaced rather than thrown on.
std::string DumpJson(const Json& json);

// 200 with the run's JSON (core ToJson).
Response RunResponse(const Run& run);

// The 404 for an id that is not a run (also for one that is not a UUID at all).
Response UnknownRun(std::string_view id);

// Reads run `id` on the calling thread after checking it is a UUID (kNotFound otherwise,
// without touching the store).
Result<Run> GetRun(ApiContext& ctx, std::string_view id);

// The response for a store error about run `id`: UnknownRun for kNotFound, else ToHttpResponse.
Response RunErrorResponse(std::string_view id, const Error& error);

// The hand-written OpenAPI 3 document (openapi.cpp).
std::string_view OpenApiDocument();

}  // namespace gpuq::api
