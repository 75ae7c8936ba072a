// GET /gpu/status, POST /gpu/prepare-phase/{phase}, POST /gpu/service/{name}/start|stop,
// POST /gpu/release-all, POST /gpu/lock/release: the notes' GPU endpoints.
//
// The API owns no GPU: it reads what agents report in their heartbeats (store.ListAgents) and
// the GPU locks (named leases "lock:<host>:<index>"), and it acts through the store's command
// queue: PostCommand to each agent concerned, then WaitReply until every one has answered, so a
// reply means the state has settled (as the notes' calls do).
#include <algorithm>
#include <charconv>
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/blocking.hpp"
#include "api/errors.hpp"
#include "api/routes.hpp"

namespace gpuq::api {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Service start-ups can take minutes (the notes' health_timeout goes up to 120 s, plus
// stopping what is in the way), so these are generous and independent of the config.
constexpr Millis kSlowCommandTimeout = 300s;  // service.start, phase.prepare, release_all
constexpr Millis kStopCommandTimeout = 120s;  // service.stop
// A reply wait is cut into slices so Server::Stop ends it soon; a reply in this process still
// wakes the slice early.
constexpr Millis kWaitSlice = 500ms;

std::string LockName(std::string_view host, int index) {
  return fmt::format("lock:{}:{}", host, index);
}

// Whole seconds left, rounded up (the notes' Redis TTL); at least 1 for a held lock.
long long TtlSeconds(TimePoint expires_at, TimePoint now) {
  long long left_ms = (expires_at - now).count();
  return std::max<long long>(1, (left_ms + 999) / 1000);
}

// Fills every GPU's lock from the store. Blocking.
Result<void> FillLocks(ApiContext& ctx, std::vector<AgentGpuReport>& reports) {
  for (auto& report : reports) {
    for (auto& gpu : report.gpus) {
      BOOST_OUTCOME_TRY(auto lease, ctx.store.GetLease(LockName(gpu.host, gpu.index)));
      gpu.lock = GpuLockStatus{};
      if (lease) {
        gpu.lock.holder = lease->holder;
        gpu.lock.ttl_s = TtlSeconds(lease->expires_at, ctx.clock.Now());
        gpu.lock.token = lease->token;
      }
    }
  }
  return Ok();
}

std::vector<std::string> ServiceNames(const config::Config& config) {
  std::vector<std::string> names;
  for (const auto& [name, spec] : config.services) names.push_back(name);
  return names;
}

Response NoAgent() {
  return ToHttpResponse(
      Error{Errc::kUnavailable, "no agent is running: start `gpuq serve` or `gpuq agent`"});
}

// The service named in the path, percent-decoded; kNotFound unless it is configured.
Result<std::string> ConfiguredService(const ApiContext& ctx, std::string_view raw) {
  auto name = PercentDecode(raw, false);
  if (name && ctx.config.services.contains(*name)) return std::move(*name);
  std::string shown(raw.substr(0, 64));
  std::vector<std::string> known = ServiceNames(ctx.config);
  return Error{
      Errc::kNotFound,
      fmt::format("unknown service \"{}\"; configured: {}", shown,
                  known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", ")))};
}

// ---- commands -------------------------------------------------------------------------------

struct AgentReply {
  std::string agent;
  Json reply;  // an object (anything else from an agent is turned into a failure)
};

bool Succeeded(const Json& reply) {
  auto it = reply.find("success");
  return it != reply.end() && it->is_boolean() && it->get<bool>();
}

std::string ReplyError(const Json& reply) {
  auto it = reply.find("error");
  return it != reply.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Sends `kind` to every agent in `agents`, then waits for all their replies under one
// deadline. kTimeout when one does not answer in time or skipped it as expired; kUnavailable
// when the server stops meanwhile; store errors as they come.
asio::awaitable<Result<std::vector<AgentReply>>> SendCommand(ApiContext& ctx,
                                                             std::vector<std::string> agents,
                                                             std::string kind, Json args,
                                                             Millis timeout) {
  const Millis wait = ctx.gpu_command_timeout.value_or(timeout);
  const TimePoint deadline = ctx.clock.Now() + wait;
  const auto end = std::chrono::steady_clock::now() + wait;
  auto post = [&ctx, &agents, &kind, &args, deadline]() -> Result<std::vector<std::string>> {
    std::vector<std::string> ids;
    for (const auto& agent : agents) {
      BOOST_OUTCOME_TRY(auto id, ctx.store.PostCommand(agent, kind, args, deadline));
      ids.push_back(std::move(id));
    }
    return ids;
  };
  // The references in `post` stay valid: this frame waits for the pool to finish it.
  auto posted = co_await RunBlocking(ctx.blocking, std::move(post));
  if (!posted) co_return posted.error();

  std::vector<AgentReply> replies;
  for (size_t i = 0; i < agents.size(); ++i) {
    const std::string& id = posted.value()[i];
    std::optional<Json> reply;
    while (!reply) {
      if (ctx.stopping) co_return Error{Errc::kUnavailable, "the server is stopping"};
      auto left = std::chrono::duration_cast<Millis>(end - std::chrono::steady_clock::now());
      if (left <= Millis(0)) {
        co_return Error{Errc::kTimeout, fmt::format("agent {} did not answer {} within {} s",
                                                    agents[i], kind, (wait.count() + 999) / 1000)};
      }
      Millis slice = std::min(left, kWaitSlice);
      auto got = co_await RunBlocking(
          ctx.blocking, [&ctx, &id, slice] { return ctx.store.WaitReply(id, slice); });
      if (!got) co_return got.error();
      reply = std::move(got).value();
    }
    if (!reply->is_object()) {
      *reply = Json{{"success", false}, {"error", "the agent sent a malformed reply"}};
    }
    if (!Succeeded(*reply) && ReplyError(*reply) == "expired") {
      co_return Error{Errc::kTimeout, fmt::format("agent {} skipped {}: it arrived past its "
                                                  "deadline",
                                                  agents[i], kind)};
    }
    replies.push_back(AgentReply{agents[i], std::move(*reply)});
  }
  co_return replies;
}

// Appends the strings of reply[key] not yet in `into`.
void Union(Json& into, const Json& reply, const char* key) {
  auto it = reply.find(key);
  if (it == reply.end() || !it->is_array()) return;
  for (const auto& item : *it) {
    if (std::find(into.begin(), into.end(), item) == into.end()) into.push_back(item);
  }
}

// "agent a: why; agent b: why" over the replies that failed; empty when none did.
std::string Failures(const std::vector<AgentReply>& replies) {
  std::vector<std::string> parts;
  for (const auto& r : replies) {
    if (Succeeded(r.reply)) continue;
    std::string why = ReplyError(r.reply);
    parts.push_back(fmt::format("agent {}: {}", r.agent, why.empty() ? "failed" : why));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

bool AllSucceeded(const std::vector<AgentReply>& replies) {
  return std::all_of(replies.begin(), replies.end(),
                     [](const AgentReply& r) { return Succeeded(r.reply); });
}

// Live agents' reports with their locks filled in, read on the blocking pool.
asio::awaitable<Result<std::vector<AgentGpuReport>>> ReadReports(ApiContext& ctx, bool with_locks) {
  co_return co_await RunBlocking(ctx.blocking,
                                 [&ctx, with_locks]() -> Result<std::vector<AgentGpuReport>> {
                                   BOOST_OUTCOME_TRY(auto reports, LiveGpuReports(ctx.store));
                                   if (with_locks) {
                                     BOOST_OUTCOME_TRY(FillLocks(ctx, reports));
                                   }
                                   return reports;
                                 });
}

std::vector<std::string> AgentIds(const std::vector<AgentGpuReport>& reports) {
  std::vector<std::string> ids;
  for (const auto& r : reports) ids.push_back(r.agent);
  return ids;
}

// ---- routes ---------------------------------------------------------------------------------

asio::awaitable<Response> Status(ApiContext& ctx, const Request&, PathParams) {
  auto reports = co_await ReadReports(ctx, true);
  if (!reports) co_return ToHttpResponse(reports.error());
  co_return JsonResponse(DumpJson(GpuStatusReply(reports.value(), ServiceNames(ctx.config))));
}

Response InvalidPhase(const ApiContext& ctx, std::string_view raw) {
  std::vector<std::string> known;
  for (const auto& [number, name] : ctx.config.phases) {
    known.push_back(fmt::format("{} {}", number, name));
  }
  std::string shown(raw.substr(0, 32));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  // 400 as in the notes (their `HTTPException(400, "Invalid phase...")`), not 422.
  return ErrorResponse(400, "invalid_phase",
                       fmt::format("phase {} is not configured: {}", shown,
                                   known.empty() ? std::string("no phases are")
                                                 : fmt::format("{}", fmt::join(known, ", "))));
}

asio::awaitable<Response> PreparePhase(ApiContext& ctx, const Request&, PathParams params) {
  std::string_view raw = params[0];
  int phase = 0;
  auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), phase);
  if (ec != std::errc() || end != raw.data() + raw.size() || !ctx.config.phases.contains(phase)) {
    co_return InvalidPhase(ctx, raw);
  }
  auto reports = co_await ReadReports(ctx, false);
  if (!reports) co_return ToHttpResponse(reports.error());
  if (reports.value().empty()) co_return NoAgent();

  // Arguments built before the co_await: GCC 12 cannot keep a braced JSON literal in the
  // coroutine frame ("array used as initializer").
  Json args = {{"phase", phase}};
  auto replies = co_await SendCommand(ctx, AgentIds(reports.value()), "phase.prepare",
                                      std::move(args), kSlowCommandTimeout);
  if (!replies) co_return ToHttpResponse(replies.error());
  Json body = {{"success", AllSucceeded(replies.value())},
               {"phase", phase},
               {"started", Json::array()},
               {"stopped", Json::array()},
               {"kept_busy", Json::array()}};
  for (const auto& r : replies.value()) {
    Union(body["started"], r.reply, "started");
    Union(body["stopped"], r.reply, "stopped");
    Union(body["kept_busy"], r.reply, "kept_busy");
  }
  if (std::string failed = Failures(replies.value()); !failed.empty()) body["error"] = failed;
  co_return JsonResponse(DumpJson(body));
}

// The live agent to start `name` on: one whose report lists it on some GPU, preferring one
// where it is already resident. nullopt when none lists it.
std::optional<std::string> PickStartAgent(const std::vector<AgentGpuReport>& reports,
                                          const std::string& name) {
  std::optional<std::string> listed;
  for (const auto& report : reports) {
    for (const auto& gpu : report.gpus) {
      auto it = gpu.services.find(name);
      if (it == gpu.services.end()) continue;
      if (IsResident(it->second.state)) return report.agent;
      if (!listed) listed = report.agent;
    }
  }
  return listed;
}

asio::awaitable<Response> StartService(ApiContext& ctx, const Request&, PathParams params) {
  auto name = ConfiguredService(ctx, params[0]);
  if (!name) co_return ToHttpResponse(name.error());
  auto reports = co_await ReadReports(ctx, false);
  if (!reports) co_return ToHttpResponse(reports.error());
  if (reports.value().empty()) co_return NoAgent();
  auto agent = PickStartAgent(reports.value(), name.value());
  if (!agent) {
    co_return ToHttpResponse(
        Error{Errc::kUnavailable,
              fmt::format("no running agent has a GPU for service {} (check its `gpus` and the "
                          "agents' --gpus)",
                          name.value())});
  }

  std::vector<std::string> agents = {*agent};
  Json args = {{"service", name.value()}};
  auto replies = co_await SendCommand(ctx, std::move(agents), "service.start", std::move(args),
                                      kSlowCommandTimeout);
  if (!replies) co_return ToHttpResponse(replies.error());
  const Json& reply = replies.value().front().reply;
  Json body = {{"success", Succeeded(reply)}, {"service", name.value()}};
  if (auto it = reply.find("gpu"); it != reply.end()) body["gpu"] = *it;
  if (auto why = ReplyError(reply); !why.empty()) body["error"] = why;
  co_return JsonResponse(DumpJson(body));
}

// ?force=true|false (default false). kInvalidArgument for any other value.
Result<bool> ParseForce(std::string_view query) {
  auto force = QueryParam(query, "force");
  if (!force || *force == "false") return false;
  if (*force == "true") return true;
  return Error{Errc::kInvalidArgument,
               fmt::format("force must be true or false, not \"{}\"", force->substr(0, 32))};
}

asio::awaitable<Response> StopService(ApiContext& ctx, const Request& request, PathParams params) {
  auto name = ConfiguredService(ctx, params[0]);
  if (!name) co_return ToHttpResponse(name.error());
  auto force = ParseForce(request.query);
  if (!force) co_return ToHttpResponse(force.error());
  auto reports = co_await ReadReports(ctx, false);
  if (!reports) co_return ToHttpResponse(reports.error());
  if (reports.value().empty()) co_return NoAgent();

  std::vector<std::string> agents;
  for (const auto& report : reports.value()) {
    bool resident = std::any_of(report.gpus.begin(), report.gpus.end(), [&](const GpuStatus& g) {
      auto it = g.services.find(name.value());
      return it != g.services.end() && IsResident(it->second.state);
    });
    if (resident) agents.push_back(report.agent);
  }
  Json body = {{"success", true}, {"service", name.value()}};
  if (agents.empty()) co_return JsonResponse(DumpJson(body));  // nothing to stop

  Json args = {{"service", name.value()}, {"force", force.value()}};
  auto replies = co_await SendCommand(ctx, std::move(agents), "service.stop", std::move(args),
                                      kStopCommandTimeout);
  if (!replies) co_return ToHttpResponse(replies.error());
  for (const auto& r : replies.value()) {
    if (!force.value() && r.reply.value("busy", false)) {
      co_return ToHttpResponse(Error{
          Errc::kConflict,
          fmt::format("{} is serving runs: stop with force=true to requeue them", name.value())});
    }
  }
  body["success"] = AllSucceeded(replies.value());
  for (const auto& r : replies.value()) {
    if (r.reply.contains("requeued")) {
      if (!body.contains("requeued")) body["requeued"] = Json::array();
      Union(body["requeued"], r.reply, "requeued");
    }
  }
  if (std::string failed = Failures(replies.value()); !failed.empty()) body["error"] = failed;
  co_return JsonResponse(DumpJson(body));
}

asio::awaitable<Response> ReleaseAll(ApiContext& ctx, const Request&, PathParams) {
  auto reports = co_await ReadReports(ctx, false);
  if (!reports) co_return ToHttpResponse(reports.error());
  if (reports.value().empty()) co_return NoAgent();

  auto replies = co_await SendCommand(ctx, AgentIds(reports.value()), "release_all", Json::object(),
                                      kSlowCommandTimeout);
  if (!replies) co_return ToHttpResponse(replies.error());
  Json body = {{"success", AllSucceeded(replies.value())},
               {"message", ""},
               {"stopped", Json::array()},
               {"kept_busy", Json::array()}};
  for (const auto& r : replies.value()) {
    Union(body["stopped"], r.reply, "stopped");
    Union(body["kept_busy"], r.reply, "kept_busy");
  }
  std::string message;
  if (body["kept_busy"].empty()) {
    message = "All GPU services stopped";
  } else {
    std::vector<std::string> busy;
    for (const auto& s : body["kept_busy"])
      busy.push_back(s.is_string() ? s.get<std::string>() : s.dump());
    message = fmt::format("Stopped every idle GPU service; kept busy: {}", fmt::join(busy, ", "));
  }
  if (std::string failed = Failures(replies.value()); !failed.empty()) {
    message = fmt::format("Not every GPU service stopped: {}", failed);
    body["error"] = failed;
  }
  body["message"] = message;
  co_return JsonResponse(DumpJson(body));
}

// ?gpu=host:index -> the lock's name; nullopt when absent; kInvalidArgument when malformed.
Result<std::optional<std::string>> ParseGpu(std::string_view query) {
  auto gpu = QueryParam(query, "gpu");
  if (!gpu || gpu->empty()) return std::optional<std::string>();
  auto colon = gpu->rfind(':');
  int index = -1;
  if (colon != std::string::npos && colon > 0) {
    const char* first = gpu->data() + colon + 1;
    const char* last = gpu->data() + gpu->size();
    auto [end, ec] = std::from_chars(first, last, index);
    if (ec != std::errc() || end != last || first == last) index = -1;
  }
  if (index < 0) {
    return Error{
        Errc::kInvalidArgument,
        fmt::format("gpu must be host:index (\"host-a:0\"), not \"{}\"", gpu->substr(0, 64))};
  }
  return std::optional<std::string>(LockName(gpu->substr(0, colon), index));
}

asio::awaitable<Response> ReleaseLock(ApiContext& ctx, const Request& request, PathParams) {
  auto named = ParseGpu(request.query);
  if (!named) co_return ToHttpResponse(named.error());
  auto release = [&ctx, lock = named.value()]() -> Result<bool> {
    if (lock) return ctx.store.ForceReleaseLease(*lock);
    // Every GPU lock in view: each live agent's GPUs.
    BOOST_OUTCOME_TRY(auto reports, LiveGpuReports(ctx.store));
    bool any = false;
    for (const auto& report : reports) {
      for (const auto& gpu : report.gpus) {
        BOOST_OUTCOME_TRY(bool released,
                          ctx.store.ForceReleaseLease(LockName(gpu.host, gpu.index)));
        any = any || released;
      }
    }
    return any;
  };
  auto released = co_await RunBlocking(ctx.blocking, std::move(release));
  if (!released) co_return ToHttpResponse(released.error());
  if (released.value())
    spdlog::info("gpu lock force-released gpu={}", named.value().value_or("all"));
  co_return JsonResponse(DumpJson(Json{{"released", released.value()}}));
}

}  // namespace

Result<std::vector<AgentGpuReport>> LiveGpuReports(store::Store& store) {
  BOOST_OUTCOME_TRY(auto agents, store.ListAgents(kAgentMaxAge));
  std::vector<AgentGpuReport> reports;
  for (const auto& agent : agents) {
    auto report = AgentGpuReportFromJson(agent.state);
    if (!report) {
      // A CPU-only agent, or one from another version: it has no GPU to show or command.
      spdlog::debug("agent without a gpu report agent={} why={}", agent.id, report.error().message);
      continue;
    }
    report.value().agent = agent.id;  // commands go to the id it heartbeats under
    reports.push_back(std::move(report).value());
  }
  return reports;
}

void AddGpuRoutes(Router& router) {
  router.Add(Method::kGet, "/gpu/status", &Status);
  router.Add(Method::kPost, "/gpu/prepare-phase/{phase}", &PreparePhase);
  router.Add(Method::kPost, "/gpu/service/{name}/start", &StartService);
  router.Add(Method::kPost, "/gpu/service/{name}/stop", &StopService);
  router.Add(Method::kPost, "/gpu/release-all", &ReleaseAll);
  router.Add(Method::kPost, "/gpu/lock/release", &ReleaseLock);
}

}  // namespace gpuq::api
