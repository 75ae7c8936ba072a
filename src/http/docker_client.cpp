#include "http/docker_client.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace gpuq::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using local = asio::local::stream_protocol;
using json = nlohmann::json;

struct DockerClient::Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

struct DockerClient::Negotiated {
  std::mutex mu;
  std::string version;  // empty until negotiated
};

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Names and ids are [a-zA-Z0-9_.-], but a caller may pass anything: escape the rest so it
// cannot change the request's path or query.
std::string Escape(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// "1.41" -> {1, 41}; {0, 0} when it is not that shape.
std::pair<int, int> ParseApiVersion(std::string_view text) {
  int major = 0, minor = 0;
  auto dot = text.find('.');
  if (dot == std::string_view::npos) return {0, 0};
  for (char c : text.substr(0, dot)) {
    if (c < '0' || c > '9') return {0, 0};
    major = major * 10 + (c - '0');
  }
  for (char c : text.substr(dot + 1)) {
    if (c < '0' || c > '9') return {0, 0};
    minor = minor * 10 + (c - '0');
  }
  return {major, minor};
}

// The engine's {"message": "..."}, or the raw body when it is not that.
std::string EngineMessage(const std::string& body) {
  auto parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()) {
    return parsed["message"].get<std::string>();
  }
  std::string trimmed = body.substr(0, 200);
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) {
    trimmed.pop_back();
  }
  return trimmed.empty() ? "no message" : trimmed;
}

Errc StatusErrc(int status) {
  switch (status) {
    case 400:
      return Errc::kInvalidArgument;
    case 404:
      return Errc::kNotFound;
    case 409:
      return Errc::kConflict;
    case 503:
      return Errc::kUnavailable;
    default:
      return Errc::kInternal;
  }
}

Error EngineError(std::string_view what, int status, const std::string& body) {
  return Error{StatusErrc(status),
               fmt::format("docker {}: {} (HTTP {})", what, EngineMessage(body), status)};
}

template <class T>
T Field(const json& object, const char* key, T fallback) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

std::map<std::string, std::string> Labels(const json& object) {
  std::map<std::string, std::string> out;
  auto it = object.find("Labels");
  if (it == object.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

ContainerInfo ParseInspect(const json& doc) {
  ContainerInfo info;
  info.id = Field<std::string>(doc, "Id", "");
  info.name = Field<std::string>(doc, "Name", "");
  if (info.name.starts_with('/')) info.name.erase(0, 1);
  auto config = doc.find("Config");
  if (config != doc.end() && config->is_object()) {
    info.image = Field<std::string>(*config, "Image", "");
    info.tty = Field<bool>(*config, "Tty", false);
    info.labels = Labels(*config);
  }
  auto state = doc.find("State");
  if (state != doc.end() && state->is_object()) {
    info.status = Field<std::string>(*state, "Status", "");
    info.running = Field<bool>(*state, "Running", false);
    info.oom_killed = Field<bool>(*state, "OOMKilled", false);
    info.pid = Field<int>(*state, "Pid", 0);
    info.exit_code = Field<int>(*state, "ExitCode", 0);
  }
  return info;
}

json BuildCreateBody(const ContainerSpec& spec) {
  json body = {{"Image", spec.image}, {"Tty", spec.tty}};
  if (!spec.cmd.empty()) body["Cmd"] = spec.cmd;
  if (!spec.entrypoint.empty()) body["Entrypoint"] = spec.entrypoint;
  if (!spec.env.empty()) {
    json env = json::array();
    for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
    body["Env"] = std::move(env);
  }
  if (!spec.labels.empty()) body["Labels"] = spec.labels;
  if (!spec.working_dir.empty()) body["WorkingDir"] = spec.working_dir;
  json host = {{"AutoRemove", spec.auto_remove}, {"RestartPolicy", {{"Name", "no"}}}};
  if (!spec.binds.empty()) host["Binds"] = spec.binds;
  // Podman's compat API uses "bridge" when NetworkMode is absent, whatever containers.conf
  // says, so an explicit mode is always sent when the caller chose one.
  if (!spec.network_mode.empty()) host["NetworkMode"] = spec.network_mode;
  if (spec.shm_size_bytes) host["ShmSize"] = *spec.shm_size_bytes;
  if (!spec.ports.empty()) {
    json exposed = json::object();
    json bindings = json::object();
    for (const auto& port : spec.ports) {
      exposed[port.container_port] = json::object();
      bindings[port.container_port].push_back(
          {{"HostIp", port.host_ip}, {"HostPort", port.host_port}});
    }
    body["ExposedPorts"] = std::move(exposed);
    host["PortBindings"] = std::move(bindings);
  }
  if (!spec.devices.empty()) {
    json requests = json::array();
    for (const auto& device : spec.devices) {
      json request = {{"Driver", device.driver},
                      {"Capabilities", device.capabilities},
                      {"Options", json::object()}};
      // Count and DeviceIDs are mutually exclusive.
      if (device.device_ids.empty()) {
        request["Count"] = device.count;
      } else {
        request["DeviceIDs"] = device.device_ids;
      }
      requests.push_back(std::move(request));
    }
    host["DeviceRequests"] = std::move(requests);
  }
  body["HostConfig"] = std::move(host);
  return body;
}

// Runs the io_context until the pending operation's handler has run.
void RunOne(asio::io_context& io) {
  io.restart();
  io.run();
}

}  // namespace

Result<std::filesystem::path> ParseDockerHost(std::string_view docker_host) {
  std::string_view rest = docker_host;
  if (rest.starts_with("unix://")) rest.remove_prefix(7);
  if (rest.empty() || !rest.starts_with('/')) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("docker host '{}' is not a unix socket (unix:///path)", docker_host)};
  }
  return std::filesystem::path(rest);
}

ContainerLogs DemuxLogStream(std::string_view body) {
  ContainerLogs logs;
  while (body.size() >= 8) {
    auto byte = [&](size_t i) {
      return static_cast<uint32_t>(static_cast<unsigned char>(body[i]));
    };
    unsigned stream = byte(0);
    uint32_t size = byte(4) << 24 | byte(5) << 16 | byte(6) << 8 | byte(7);
    body.remove_prefix(8);
    auto payload = body.substr(0, std::min<size_t>(size, body.size()));
    body.remove_prefix(payload.size());
    (stream == 2 ? logs.err : logs.out).append(payload);
    logs.all.append(payload);
  }
  return logs;
}

std::string ContainerCreateBody(const ContainerSpec& spec) { return BuildCreateBody(spec).dump(); }

DockerClient::DockerClient(DockerOptions options)
    : options_(std::move(options)), negotiated_(std::make_unique<Negotiated>()) {}

DockerClient::~DockerClient() = default;

Result<DockerClient::Reply> DockerClient::Call(std::string_view method, const std::string& target,
                                               std::string_view body, bool versioned,
                                               std::chrono::milliseconds extra_time) {
  std::string path = target;
  if (versioned) {
    BOOST_OUTCOME_TRY(auto version, ApiVersion());
    path = fmt::format("/v{}{}", version, target);
  }
  auto where = [&] { return fmt::format("{} {} on {}", method, target, options_.socket.string()); };

  // One io_context and connection per call: no state is shared between threads, and the
  // stream's expiry is one deadline over connect, write and read together.
  asio::io_context io;
  beast::basic_stream<local> stream(io);
  stream.expires_after(options_.timeout + extra_time);
  beast::error_code ec;
  auto io_error = [&](const char* step) {
    bool timed_out = ec == beast::error::timeout;
    return Error{timed_out ? Errc::kTimeout : Errc::kUnavailable,
                 fmt::format("docker {} {}: {}", step, where(),
                             timed_out ? std::string("timed out") : ec.message())};
  };

  stream.async_connect(local::endpoint(options_.socket.string()),
                       [&](beast::error_code e) { ec = e; });
  RunOne(io);
  if (ec) return io_error("connect");

  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(path);
  req.version(11);
  req.set(bhttp::field::host, "docker");
  req.set(bhttp::field::user_agent, "gpuq");
  if (!body.empty()) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  req.prepare_payload();
  bhttp::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
  RunOne(io);
  if (ec) return io_error("send");

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1ull << 30);  // logs can be large; the engine caps nothing
  bhttp::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  RunOne(io);
  if (ec) return io_error("read");

  auto msg = parser.release();
  Reply reply;
  reply.status = static_cast<int>(msg.result_int());
  for (const auto& field : msg) {
    reply.headers[Lower(std::string(field.name_string()))] = std::string(field.value());
  }
  reply.body = std::move(msg.body());
  beast::error_code ignored;
  stream.socket().shutdown(local::socket::shutdown_both, ignored);
  return reply;
}

Result<void> DockerClient::Ping() {
  BOOST_OUTCOME_TRY(auto reply, Call("GET", "/_ping", {}, false));
  if (reply.status != 200) return EngineError("ping", reply.status, reply.body);
  return Ok();
}

Result<EngineVersion> DockerClient::Version() {
  BOOST_OUTCOME_TRY(auto reply, Call("GET", "/version", {}, false));
  if (reply.status != 200) return EngineError("version", reply.status, reply.body);
  auto doc = json::parse(reply.body, nullptr, false);
  if (!doc.is_object()) {
    return Error{Errc::kInternal,
                 fmt::format("docker version: not JSON: {}", reply.body.substr(0, 200))};
  }
  EngineVersion out;
  out.version = Field<std::string>(doc, "Version", "");
  out.api_version = Field<std::string>(doc, "ApiVersion", "");
  out.min_api_version = Field<std::string>(doc, "MinAPIVersion", "");
  out.os = Field<std::string>(doc, "Os", "");
  out.arch = Field<std::string>(doc, "Arch", "");
  return out;
}

Result<std::string> DockerClient::ApiVersion() {
  std::lock_guard lock(negotiated_->mu);
  if (!negotiated_->version.empty()) return negotiated_->version;
  // /_ping is the cheap way: its Api-Version header is the engine's maximum. Engines that do
  // not send it still answer /version, which also names the minimum.
  std::string server_max;
  std::string server_min;
  BOOST_OUTCOME_TRY(auto ping, Call("GET", "/_ping", {}, false));
  if (ping.status == 200) {
    auto it = ping.headers.find("api-version");
    if (it != ping.headers.end()) server_max = it->second;
  }
  if (ParseApiVersion(server_max) == std::pair{0, 0}) {
    BOOST_OUTCOME_TRY(auto version, Version());
    server_max = version.api_version;
    server_min = version.min_api_version;
  }
  auto ours = ParseApiVersion(options_.max_api_version);
  auto theirs = ParseApiVersion(server_max);
  if (theirs == std::pair{0, 0}) {
    return Error{Errc::kUnavailable, fmt::format("docker engine on {} did not say its API version",
                                                 options_.socket.string())};
  }
  if (!server_min.empty() && ParseApiVersion(server_min) > ours) {
    return Error{Errc::kUnavailable,
                 fmt::format("docker engine on {} needs API {} or newer; gpuq speaks up to {}",
                             options_.socket.string(), server_min, options_.max_api_version)};
  }
  negotiated_->version = theirs < ours ? server_max : options_.max_api_version;
  return negotiated_->version;
}

Result<ContainerInfo> DockerClient::Inspect(std::string_view name_or_id) {
  BOOST_OUTCOME_TRY(auto reply,
                    Call("GET", fmt::format("/containers/{}/json", Escape(name_or_id)), {}, true));
  if (reply.status != 200) {
    return EngineError(fmt::format("inspect {}", name_or_id), reply.status, reply.body);
  }
  auto doc = json::parse(reply.body, nullptr, false);
  if (!doc.is_object()) {
    return Error{Errc::kInternal,
                 fmt::format("docker inspect {}: reply is not a JSON object", name_or_id)};
  }
  return ParseInspect(doc);
}

Result<std::string> DockerClient::Create(const ContainerSpec& spec) {
  std::string target = "/containers/create";
  if (!spec.name.empty()) target += "?name=" + Escape(spec.name);
  BOOST_OUTCOME_TRY(auto reply, Call("POST", target, ContainerCreateBody(spec), true));
  if (reply.status == 404) {
    // The engine does not pull on create; say what to do rather than "no such image".
    return Error{Errc::kNotFound,
                 fmt::format("docker create {}: image {} is missing on this host (pull or build "
                             "it first): {}",
                             spec.name, spec.image, EngineMessage(reply.body))};
  }
  if (reply.status != 201 && reply.status != 200) {
    return EngineError(fmt::format("create {}", spec.name), reply.status, reply.body);
  }
  auto doc = json::parse(reply.body, nullptr, false);
  std::string id = doc.is_object() ? Field<std::string>(doc, "Id", "") : "";
  if (id.empty()) {
    return Error{Errc::kInternal, fmt::format("docker create {}: no Id in the reply: {}", spec.name,
                                              reply.body.substr(0, 200))};
  }
  return id;
}

Result<void> DockerClient::Start(std::string_view name_or_id) {
  BOOST_OUTCOME_TRY(
      auto reply, Call("POST", fmt::format("/containers/{}/start", Escape(name_or_id)), {}, true));
  if (reply.status == 204 || reply.status == 304 || reply.status == 200) return Ok();
  return EngineError(fmt::format("start {}", name_or_id), reply.status, reply.body);
}

Result<void> DockerClient::Tag(std::string_view image, std::string_view repo,
                               std::string_view tag) {
  BOOST_OUTCOME_TRY(auto reply, Call("POST",
                                     fmt::format("/images/{}/tag?repo={}&tag={}", Escape(image),
                                                 Escape(repo), Escape(tag)),
                                     {}, true));
  if (reply.status == 201 || reply.status == 200) return Ok();
  return EngineError(fmt::format("tag {}", image), reply.status, reply.body);
}

Result<void> DockerClient::Stop(std::string_view name_or_id, std::chrono::seconds timeout) {
  auto seconds = std::max<long long>(0, timeout.count());
  // The engine answers only once the container stopped: up to `timeout` plus the kill.
  BOOST_OUTCOME_TRY(
      auto reply, Call("POST", fmt::format("/containers/{}/stop?t={}", Escape(name_or_id), seconds),
                       {}, true, std::chrono::seconds(seconds)));
  if (reply.status == 204 || reply.status == 304 || reply.status == 200) return Ok();
  return EngineError(fmt::format("stop {}", name_or_id), reply.status, reply.body);
}

Result<void> DockerClient::Kill(std::string_view name_or_id, std::string_view signal) {
  BOOST_OUTCOME_TRY(
      auto reply,
      Call("POST", fmt::format("/containers/{}/kill?signal={}", Escape(name_or_id), Escape(signal)),
           {}, true));
  if (reply.status == 204 || reply.status == 200) return Ok();
  return EngineError(fmt::format("kill {}", name_or_id), reply.status, reply.body);
}

Result<void> DockerClient::Remove(std::string_view name_or_id, bool force) {
  BOOST_OUTCOME_TRY(
      auto reply,
      Call("DELETE", fmt::format("/containers/{}?force={}", Escape(name_or_id), force ? 1 : 0), {},
           true));
  if (reply.status == 204 || reply.status == 200) return Ok();
  return EngineError(fmt::format("remove {}", name_or_id), reply.status, reply.body);
}

Result<ContainerLogs> DockerClient::Logs(std::string_view name_or_id, const LogsOptions& options) {
  // Whether the body is framed depends on the container's TTY; podman 4.3 sends
  // application/octet-stream either way, so the content type cannot tell.
  BOOST_OUTCOME_TRY(auto info, Inspect(name_or_id));
  std::string target = fmt::format("/containers/{}/logs?stdout=1&stderr=1", Escape(name_or_id));
  if (options.tail >= 0) target += fmt::format("&tail={}", options.tail);
  if (options.timestamps) target += "&timestamps=1";
  BOOST_OUTCOME_TRY(auto reply, Call("GET", target, {}, true));
  if (reply.status != 200) {
    return EngineError(fmt::format("logs {}", name_or_id), reply.status, reply.body);
  }
  if (info.tty) {
    ContainerLogs logs;
    logs.out = reply.body;
    logs.all = std::move(reply.body);
    return logs;
  }
  return DemuxLogStream(reply.body);
}

Result<ContainerInfo> DockerClient::WaitExited(std::string_view name_or_id,
                                               std::chrono::milliseconds deadline,
                                               std::chrono::milliseconds poll) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (true) {
    BOOST_OUTCOME_TRY(auto info, Inspect(name_or_id));
    if (!info.running) return info;
    if (std::chrono::steady_clock::now() >= end) {
      return Error{Errc::kTimeout, fmt::format("docker container {} still {} after {} ms",
                                               name_or_id, info.status, deadline.count())};
    }
    std::this_thread::sleep_for(poll);
  }
}

Result<std::vector<ContainerInfo>> DockerClient::List(const std::vector<std::string>& labels,
                                                      bool all) {
  std::string target = fmt::format("/containers/json?all={}", all ? 1 : 0);
  if (!labels.empty()) {
    json filters = {{"label", labels}};
    target += "&filters=" + Escape(filters.dump());
  }
  BOOST_OUTCOME_TRY(auto reply, Call("GET", target, {}, true));
  if (reply.status != 200) return EngineError("list containers", reply.status, reply.body);
  auto doc = json::parse(reply.body, nullptr, false);
  if (!doc.is_array()) {
    return Error{Errc::kInternal, "docker list containers: reply is not a JSON array"};
  }
  std::vector<ContainerInfo> out;
  for (const auto& item : doc) {
    if (!item.is_object()) continue;
    ContainerInfo info;
    info.id = Field<std::string>(item, "Id", "");
    auto names = item.find("Names");
    if (names != item.end() && names->is_array() && !names->empty() && (*names)[0].is_string()) {
      info.name = (*names)[0].get<std::string>();
      if (info.name.starts_with('/')) info.name.erase(0, 1);
    }
    info.image = Field<std::string>(item, "Image", "");
    info.status = Field<std::string>(item, "State", "");
    info.running = info.status == "running";
    info.labels = Labels(item);
    out.push_back(std::move(info));
  }
  return out;
}

Result<DockerClient::Reply> DockerClient::StreamCall(
    std::string_view method, const std::string& target, std::stop_token stop,
    std::chrono::steady_clock::time_point deadline,
    const std::function<void(std::string_view)>& on_body) {
  BOOST_OUTCOME_TRY(auto version, ApiVersion());
  std::string path = fmt::format("/v{}{}", version, target);
  auto where = [&] { return fmt::format("{} {} on {}", method, target, options_.socket.string()); };

  asio::io_context io;
  beast::basic_stream<local> stream(io);
  stream.expires_at(deadline);
  // A stop from another thread cancels the pending read on this thread's io_context; the flag
  // also catches a stop that lands between two reads.
  std::atomic<bool> stopped{false};
  std::stop_callback on_stop(stop, [&] {
    stopped = true;
    asio::post(io, [&] { stream.cancel(); });
  });
  beast::error_code ec;
  auto io_error = [&](const char* step) {
    if (stopped) {
      return Error{Errc::kUnavailable, fmt::format("docker {}: stopped", where())};
    }
    bool timed_out = ec == beast::error::timeout;
    return Error{timed_out ? Errc::kTimeout : Errc::kUnavailable,
                 fmt::format("docker {} {}: {}", step, where(),
                             timed_out ? std::string("timed out") : ec.message())};
  };

  stream.async_connect(local::endpoint(options_.socket.string()),
                       [&](beast::error_code e) { ec = e; });
  RunOne(io);
  if (ec || stopped) return io_error("connect");

  bhttp::request<bhttp::empty_body> req;
  req.method_string(method);
  req.target(path);
  req.version(11);
  req.set(bhttp::field::host, "docker");
  req.set(bhttp::field::user_agent, "gpuq");
  req.prepare_payload();
  bhttp::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
  RunOne(io);
  if (ec || stopped) return io_error("send");

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);  // a followed log has no end we know of
  bhttp::async_read_header(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  RunOne(io);
  if (ec || stopped) return io_error("read");

  Reply reply;
  reply.status = static_cast<int>(parser.get().result_int());
  for (const auto& field : parser.get()) {
    reply.headers[Lower(std::string(field.name_string()))] = std::string(field.value());
  }
  bool success = reply.status >= 200 && reply.status < 300;
  char chunk[16 * 1024];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    // read_some, not read: a followed log must reach the sink as it comes, not when 16 KiB
    // have piled up.
    bhttp::async_read_some(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
    RunOne(io);
    if (ec == bhttp::error::need_buffer) ec = {};
    size_t got = sizeof chunk - parser.get().body().size;
    if (got > 0) {
      if (success) {
        on_body(std::string_view(chunk, got));
      } else if (reply.body.size() < 64 * 1024) {
        reply.body.append(chunk, got);
      }
    }
    if (stopped) return io_error("read");
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof) break;
    if (ec) return io_error("read");
  }
  beast::error_code ignored;
  stream.socket().shutdown(local::socket::shutdown_both, ignored);
  return reply;
}

Result<void> DockerClient::FollowLogs(std::string_view name_or_id, const OutputSink& sink,
                                      std::stop_token stop,
                                      std::chrono::steady_clock::time_point deadline) {
  BOOST_OUTCOME_TRY(auto info, Inspect(name_or_id));
  std::string target =
      fmt::format("/containers/{}/logs?stdout=1&stderr=1&follow=1", Escape(name_or_id));
  // Frames are not aligned to reads: keep the tail of a frame until the rest arrives.
  std::string pending;
  auto on_body = [&](std::string_view bytes) {
    if (info.tty) {
      sink(1, bytes);
      return;
    }
    pending.append(bytes);
    size_t at = 0;
    while (pending.size() - at >= 8) {
      auto byte = [&](size_t i) {
        return static_cast<uint32_t>(static_cast<unsigned char>(pending[at + i]));
      };
      int stream = byte(0) == 2 ? 2 : 1;
      uint32_t size = byte(4) << 24 | byte(5) << 16 | byte(6) << 8 | byte(7);
      size_t have = std::min<size_t>(size, pending.size() - at - 8);
      if (have > 0) sink(stream, std::string_view(pending).substr(at + 8, have));
      if (have < size) {
        // Pass on what arrived and keep a header for the rest of the frame.
        uint32_t rest = size - static_cast<uint32_t>(have);
        std::string header = {static_cast<char>(stream),
                              0,
                              0,
                              0,
                              static_cast<char>(rest >> 24),
                              static_cast<char>(rest >> 16),
                              static_cast<char>(rest >> 8),
                              static_cast<char>(rest)};
        pending = header;
        return;
      }
      at += 8 + size;
    }
    pending.erase(0, at);
  };
  BOOST_OUTCOME_TRY(auto reply, StreamCall("GET", target, stop, deadline, on_body));
  if (reply.status != 200) {
    return EngineError(fmt::format("logs {}", name_or_id), reply.status, reply.body);
  }
  return Ok();
}

Result<void> DockerClient::Pull(std::string_view image, std::stop_token stop,
                                std::chrono::steady_clock::time_point deadline) {
  // "repo:tag" -> fromImage=repo&tag=tag; a ':' before the last '/' is a registry port, and
  // a digest reference goes whole in fromImage.
  std::string repo(image), tag;
  auto slash = repo.rfind('/');
  auto colon = repo.rfind(':');
  if (repo.find('@') == std::string::npos && colon != std::string::npos &&
      (slash == std::string::npos || colon > slash)) {
    tag = repo.substr(colon + 1);
    repo.resize(colon);
  }
  std::string target = "/images/create?fromImage=" + Escape(repo);
  if (!tag.empty()) target += "&tag=" + Escape(tag);
  // The progress stream is JSON lines; a failure can arrive as {"error": "..."} after a 200.
  std::string line, failure;
  auto on_body = [&](std::string_view bytes) {
    for (char c : bytes) {
      if (c != '\n') {
        if (line.size() < 64 * 1024) line.push_back(c);
        continue;
      }
      auto doc = json::parse(line, nullptr, false);
      if (doc.is_object() && doc.contains("error") && doc["error"].is_string() &&
          !doc["error"].get<std::string>().empty()) {
        failure = doc["error"].get<std::string>();
      }
      line.clear();
    }
  };
  auto reply = StreamCall("POST", target, stop, deadline, on_body);
  if (!reply) {
    return Error{reply.error().code,
                 fmt::format("docker pull {}: {}", image, reply.error().message)};
  }
  on_body("\n");  // a last line without its newline
  if (reply.value().status != 200) {
    return Error{Errc::kUnavailable,
                 fmt::format("docker pull {}: {} (HTTP {})", image,
                             EngineMessage(reply.value().body), reply.value().status)};
  }
  if (!failure.empty()) {
    return Error{Errc::kUnavailable, fmt::format("docker pull {}: {}", image, failure)};
  }
  return Ok();
}

}  // namespace gpuq::http
