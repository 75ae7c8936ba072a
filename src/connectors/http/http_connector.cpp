#include "connectors/http/http_connector.hpp"

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <stop_token>

#include "core/placeholder.hpp"
#include "connectors/service_error.hpp"
#include "http/client.hpp"

namespace gpuq::connectors {

namespace {

// The endpoint path with its placeholders filled from the payload (and the run id).
Result<std::string> FillEndpoint(const TaskType& type, const Json& payload,
                                 const std::string& run_id) {
  Json values = payload.is_object() ? payload : Json::object();
  values["run_id"] = run_id;
  BOOST_OUTCOME_TRY(auto path, FillText(type.endpoint.empty() ? "/" : type.endpoint, values));
  if (path.empty() || path.front() != '/') path.insert(0, "/");
  return path;
}

// Joins a base URL's path ("http://h:p/api") and an endpoint ("/run") without doubling '/'.
std::string JoinTarget(std::string base, const std::string& path) {
  if (auto q = base.find('?'); q != std::string::npos) base.resize(q);
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + path;
}

}  // namespace

Result<void> HttpConnector::Validate(const TaskType& type, const Json& payload) const {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "http payload must be a JSON object"};
  }
  BOOST_OUTCOME_TRY(FillEndpoint(type, payload, "run"));
  return Ok();
}

Result<Outcome> HttpConnector::Execute(RunContext& ctx) {
  if (ctx.service_url.empty()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("task type {} has no service URL: the http connector needs a "
                             "service-bound task type",
                             ctx.task_type.name)};
  }
  BOOST_OUTCOME_TRY(auto base, http::ParseHttpUrl(ctx.service_url));
  BOOST_OUTCOME_TRY(auto path, FillEndpoint(ctx.task_type, ctx.run.payload, ctx.run.id));
  std::string target = JoinTarget(base.target, path);
  std::string url = fmt::format("http://{}:{}{}", base.endpoint.host, base.endpoint.port, target);

  // The agent enforces the run's timeout through ctx.stop; the socket deadline only catches a
  // service that went silent.
  int timeout_s = ctx.run.timeout_s > 0 ? ctx.run.timeout_s : ctx.task_type.timeout_s;
  http::Client client(base.endpoint, std::chrono::seconds(std::max(timeout_s, 1)));
  std::stop_callback abort_on_stop(ctx.stop, [&client] { client.Abort(); });

  std::ofstream log(ctx.log_file, std::ios::app);
  log << fmt::format("POST {}\n", url) << std::flush;
  auto started = std::chrono::steady_clock::now();
  auto response = client.Post(target, ctx.run.payload.dump());
  auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  if (ctx.stop.stop_requested()) {
    log << fmt::format("stopped after {} ms\n", took.count());
    return Error{Errc::kUnavailable, "http request stopped"};
  }
  if (!response) {
    log << fmt::format("failed after {} ms: {}\n", took.count(), response.error().message);
    return response.error();
  }
  const auto& reply = response.value();
  log << fmt::format("status {} after {} ms, {} bytes\n", reply.status, took.count(),
                     reply.body.size());
  if (reply.status < 200 || reply.status >= 300) {
    bool transient = reply.status == 502 || reply.status == 503 || reply.status == 504;
    log << reply.body << "\n";
    return Error{transient ? Errc::kUnavailable : Errc::kInvalidArgument,
                 fmt::format("service replied {}: {}", reply.status, ServiceErrorText(reply.body))};
  }
  Outcome outcome;
  auto json = Json::parse(reply.body, nullptr, false);
  outcome.result = json.is_discarded() ? Json{{"body", reply.body}} : std::move(json);
  return outcome;
}

}  // namespace gpuq::connectors
