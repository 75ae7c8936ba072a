// GET /task_status/{id}, GET /runs, GET /runs/{id}, GET /runs/{id}/children,
// POST /runs/{id}/cancel, POST /runs/{id}/retry.
#include <charconv>

#include <fmt/format.h>

#include "api/blocking.hpp"
#include "api/errors.hpp"
#include "api/run_json.hpp"
#include "api/routes.hpp"
#include "core/ids.hpp"

namespace gpuq::api {
namespace {

namespace asio = boost::asio;

// The hot path: a cached document, or a point read on this io thread (SQLite, per-thread
// connection), no pool hop.
asio::awaitable<Response> ShowRun(ApiContext& ctx, const Request&, PathParams params) {
  if (!IsUuid(params[0])) co_return UnknownRun(params[0]);
  auto document = ctx.runs.Document(params[0]);
  if (!document) co_return RunErrorResponse(params[0], document.error());
  co_return JsonResponse(std::move(document).value());
}

Error Invalid(std::string message) { return Error{Errc::kInvalidArgument, std::move(message)}; }

Result<int> ParseLimit(const std::string& text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1 || value > 1000) {
    return Invalid(fmt::format("limit must be an integer from 1 to 1000, not \"{}\"", text));
  }
  return value;
}

// status=&type=&parent=&limit=&before= -> RunFilter; kInvalidArgument on a bad word.
Result<store::RunFilter> ParseFilter(std::string_view query) {
  store::RunFilter filter;
  if (auto status = QueryParam(query, "status"); status && !status->empty()) {
    filter.state = ParseRunState(*status);
    if (!filter.state) {
      return Invalid(fmt::format(
          "status must be one of waiting, pending, processing, completed, failed, cancelled; "
          "not \"{}\"",
          *status));
    }
  }
  if (auto type = QueryParam(query, "type"); type && !type->empty()) {
    filter.type = CanonicalTaskType(*type);
  }
  if (auto parent = QueryParam(query, "parent"); parent && !parent->empty()) {
    if (!IsUuid(*parent)) return Invalid("parent must be a run id (a UUID)");
    filter.parent_run_id = std::move(*parent);
  }
  if (auto limit = QueryParam(query, "limit"); limit) {
    BOOST_OUTCOME_TRY(filter.limit, ParseLimit(*limit));
  }
  if (auto before = QueryParam(query, "before"); before && !before->empty()) {
    filter.before = std::move(*before);
  }
  return filter;
}

Response PageResponse(const store::RunPage& page) {
  Response response;
  std::string& body = response.body;
  body.reserve(64 + page.runs.size() * 700);
  body += "{\"next_before\":";
  body += page.next_before ? DumpJson(Json(*page.next_before)) : std::string("null");
  body += ",\"runs\":[";
  for (size_t i = 0; i < page.runs.size(); ++i) {
    if (i > 0) body.push_back(',');
    AppendRunJson(page.runs[i], body);
  }
  body += "]}";
  return response;
}

// Lists can scan many rows: they run on the blocking pool.
asio::awaitable<Response> ListPage(ApiContext& ctx, store::RunFilter filter) {
  auto list = [&ctx, filter = std::move(filter)] { return ctx.store.List(filter); };
  auto page = co_await RunBlocking(ctx.blocking, std::move(list));
  if (!page) co_return ToHttpResponse(page.error());
  co_return PageResponse(page.value());
}

asio::awaitable<Response> ListRuns(ApiContext& ctx, const Request& request, PathParams) {
  auto filter = ParseFilter(request.query);
  if (!filter) co_return ToHttpResponse(filter.error());
  co_return co_await ListPage(ctx, std::move(filter).value());
}

asio::awaitable<Response> Children(ApiContext& ctx, const Request& request, PathParams params) {
  auto parent = GetRun(ctx, params[0]);
  if (!parent) co_return RunErrorResponse(params[0], parent.error());
  auto filter = ParseFilter(request.query);
  if (!filter) co_return ToHttpResponse(filter.error());
  filter.value().parent_run_id = parent.value().id;
  co_return co_await ListPage(ctx, std::move(filter).value());
}

// Cancel and retry write: on the blocking pool.
template <class Op>
asio::awaitable<Response> Transition(ApiContext& ctx, std::string id, Op op) {
  if (!IsUuid(id)) co_return UnknownRun(id);
  auto call = [&ctx, id, op] { return op(ctx.store, id); };
  auto run = co_await RunBlocking(ctx.blocking, std::move(call));
  if (!run) co_return RunErrorResponse(id, run.error());
  co_return RunResponse(run.value());
}

asio::awaitable<Response> CancelRun(ApiContext& ctx, const Request&, PathParams params) {
  co_return co_await Transition(ctx, std::string(params[0]),
                                [](store::Store& store, const std::string& id) {
                                  return store.Cancel(id);
                                });
}

asio::awaitable<Response> RetryRun(ApiContext& ctx, const Request&, PathParams params) {
  co_return co_await Transition(ctx, std::string(params[0]),
                                [](store::Store& store, const std::string& id) {
                                  return store.Retry(id);
                                });
}

}  // namespace

void AddRunRoutes(Router& router) {
  router.Add(Method::kGet, "/task_status/{id}", &ShowRun);
  router.Add(Method::kGet, "/runs", &ListRuns);
  router.Add(Method::kGet, "/runs/{id}", &ShowRun);
  router.Add(Method::kGet, "/runs/{id}/children", &Children);
  router.Add(Method::kPost, "/runs/{id}/cancel", &CancelRun);
  router.Add(Method::kPost, "/runs/{id}/retry", &RetryRun);
}

}  // namespace gpuq::api
