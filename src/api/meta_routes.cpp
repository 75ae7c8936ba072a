// GET /health (open even with a token) and GET /openapi.json.
#include <utility>

#include "api/blocking.hpp"
#include "api/routes.hpp"

#ifndef GPUQ_VERSION
#define GPUQ_VERSION "0.0.0"
#endif

namespace gpuq::api {
namespace {

namespace asio = boost::asio;

// {"ok", "free_mb"}: ok when at least one live agent reports its GPUs and every report is ok
// (always, with no GPU services configured); free_mb sums the reported GPUs' free memory, null
// when nothing reports (0 with no GPU services configured).
Json GpuHealth(const ApiContext& ctx, const Result<std::vector<AgentGpuReport>>& reports) {
  const bool gpu_services = !ctx.config.services.empty();
  const bool any = reports && !reports.value().empty();
  long long free_mb = 0;
  bool all_ok = true;
  if (reports) {
    for (const auto& report : reports.value()) {
      all_ok = all_ok && report.ok;
      for (const auto& gpu : report.gpus) free_mb += gpu.free_mb;
    }
  }
  if (!gpu_services) return {{"ok", true}, {"free_mb", free_mb}};
  return {{"ok", any && all_ok}, {"free_mb", any ? Json(free_mb) : Json(nullptr)}};
}

asio::awaitable<Response> Health(ApiContext& ctx, const Request&, PathParams) {
  // A Redis PING may wait on the network: off the io thread, with the agents' reports.
  auto [ping, reports] = co_await RunBlocking(
      ctx.blocking, [&ctx] { return std::make_pair(ctx.store.Ping(), LiveGpuReports(ctx.store)); });
  const bool ok = static_cast<bool>(ping);
  Json gpu = GpuHealth(ctx, reports);
  const bool gpu_ok = gpu["ok"].get<bool>();
  std::string store = ctx.store.Describe();
  Json body = {
      {"status", ok && gpu_ok ? "healthy" : "degraded"},
      {"version", GPUQ_VERSION},
      {"store", store},
      {"store_ok", ok},
      {"gpu", std::move(gpu)},
  };
  if (store.rfind("redis://", 0) == 0) body["redis"] = ok;
  if (!ok) body["store_error"] = ping.error().message;
  co_return JsonResponse(DumpJson(body));
}

asio::awaitable<Response> OpenApi(ApiContext&, const Request&, PathParams) {
  co_return JsonResponse(std::string(OpenApiDocument()));
}

}  // namespace

void AddMetaRoutes(Router& router) {
  router.Add(Method::kGet, "/health", &Health);
  router.Add(Method::kGet, "/openapi.json", &OpenApi);
}

}  // namespace gpuq::api
