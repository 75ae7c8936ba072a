// GET /health (open even with a token) and GET /openapi.json.
#include "api/blocking.hpp"
#include "api/routes.hpp"

#ifndef GPUQ_VERSION
#define GPUQ_VERSION "0.0.0"
#endif

namespace gpuq::api {
namespace {

namespace asio = boost::asio;

asio::awaitable<Response> Health(ApiContext& ctx, const Request&, PathParams) {
  // A Redis PING may wait on the network: off the io thread.
  auto ping = co_await RunBlocking(ctx.blocking, [&ctx] { return ctx.store.Ping(); });
  const bool ok = static_cast<bool>(ping);
  std::string store = ctx.store.Describe();
  Json body = {
      {"status", ok ? "healthy" : "degraded"},
      {"version", GPUQ_VERSION},
      {"store", store},
      {"store_ok", ok},
      {"gpu", {{"ok", false}, {"free_mb", nullptr}}},
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
