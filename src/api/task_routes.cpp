// POST /submit_task, POST /task/submit (the notes' alias), GET /task_types.
#include <fmt/format.h>

#include "api/errors.hpp"
#include "api/routes.hpp"
#include "api/store_async.hpp"
#include "api/submit_validation.hpp"

namespace gpuq::api {
namespace {

namespace asio = boost::asio;

// Queues a validated run. The parent check is a point read on this io thread (like
// /task_status); the submit itself waits for the store's group commit without parking a thread.
asio::awaitable<Response> Enqueue(ApiContext& ctx, store::NewRun run) {
  if (run.parent_run_id) {
    auto parent = ctx.store.Get(*run.parent_run_id);
    if (!parent) {
      if (parent.error().code != Errc::kNotFound) co_return ToHttpResponse(parent.error());
      co_return ToHttpResponse(
          Error{Errc::kInvalidArgument,
                fmt::format("parent_run_id {} is not a known run", *run.parent_run_id)});
    }
  }
  Result<store::Submitted> submitted = co_await Submit(ctx.store, std::move(run));
  if (!submitted) co_return ToHttpResponse(submitted.error());
  // Ids are UUIDs: nothing to escape, so skip building a JSON object on this hot path.
  const std::string& id = submitted.value().id;
  std::string body;
  body.reserve(40 + id.size());
  body += R"({"status":"queued","task_id":")";
  body += id;
  body += "\"}";
  co_return JsonResponse(std::move(body));
}

SubmitRules Rules(const ApiContext& ctx) { return {ctx.config.task_types, ctx.connectors}; }

asio::awaitable<Response> SubmitTask(ApiContext& ctx, const Request& request, PathParams) {
  auto run = ParseSubmitTask(request.body, request.Header("Idempotency-Key"), Rules(ctx));
  if (!run) co_return ToHttpResponse(run.error());
  co_return co_await Enqueue(ctx, std::move(run).value());
}

asio::awaitable<Response> TaskSubmitAlias(ApiContext& ctx, const Request& request, PathParams) {
  auto run = ParseTaskSubmit(request.body, request.Header("Idempotency-Key"), Rules(ctx));
  if (!run) co_return ToHttpResponse(run.error());
  co_return co_await Enqueue(ctx, std::move(run).value());
}

asio::awaitable<Response> TaskTypes(ApiContext& ctx, const Request&, PathParams) {
  Json types = Json::array();
  for (const auto& [name, type] : ctx.config.task_types) {
    types.push_back({
        {"name", name},
        {"connector", type.connector},
        {"service", type.service.empty() ? Json(nullptr) : Json(type.service)},
        {"description", type.description},
        {"priority", type.priority},
        {"timeout_s", type.timeout_s},
        {"max_attempts", type.max_attempts},
        {"available", ctx.connectors.Find(type.connector) != nullptr},
    });
  }
  co_return JsonResponse(DumpJson({{"task_types", std::move(types)}}));
}

}  // namespace

void AddTaskRoutes(Router& router) {
  router.Add(Method::kPost, "/submit_task", &SubmitTask);
  router.Add(Method::kPost, "/task/submit", &TaskSubmitAlias);
  router.Add(Method::kGet, "/task_types", &TaskTypes);
}

}  // namespace gpuq::api
