#include "connectors/comfyui/comfyui_connector.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stop_token>

#include "core/ids.hpp"
#include "core/placeholder.hpp"
#include "http/client.hpp"
#include "http/multipart.hpp"
#include "http/websocket.hpp"

namespace gpuq::connectors {

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kConnectTimeout{5000};
constexpr milliseconds kReadSlice{500};        // a Read waits at most this, then stop is checked
constexpr milliseconds kQuietPoll{3000};       // no event for this long: look at /history
constexpr milliseconds kRecoverPoll{250};      // socket gone: /history and reconnect pace
constexpr milliseconds kGoneAfter{30000};      // nothing answers for this long: kUnavailable
constexpr milliseconds kStopCallTimeout{400};  // each of the two calls made on stop
constexpr size_t kExcerpt = 300;

const std::set<std::string> kReserved = {"template", "workflow", "params", "images"};

std::string Excerpt(const std::string& text) {
  return text.size() <= kExcerpt ? text : text.substr(0, kExcerpt) + "...";
}

std::string UrlEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

bool SafeName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

// A relative path whose components are all safe names ("" is fine).
bool SafeSubfolder(std::string_view sub) {
  if (sub.empty()) return true;
  if (sub.front() == '/') return false;
  size_t start = 0;
  while (start <= sub.size()) {
    size_t end = sub.find('/', start);
    if (end == std::string_view::npos) end = sub.size();
    auto part = sub.substr(start, end - start);
    if (!part.empty() && !SafeName(part)) return false;
    start = end + 1;
  }
  return true;
}

Result<std::string> DecodeBase64(std::string_view text) {
  // Accepts a data: URL too ("data:image/png;base64,....").
  if (text.starts_with("data:")) {
    auto comma = text.find(',');
    if (comma == std::string_view::npos) return Error{Errc::kInvalidArgument, "bad data URL"};
    text = text.substr(comma + 1);
  }
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  int bits = 0, acc = 0;
  for (char c : text) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    int v = value(c);
    if (v < 0) return Error{Errc::kInvalidArgument, "not base64"};
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (out.empty()) return Error{Errc::kInvalidArgument, "empty image"};
  return out;
}

// "in API format the top-level values carry a class_type".
Result<void> CheckApiFormat(const Json& graph) {
  if (!graph.is_object() || graph.empty()) {
    return Error{Errc::kInvalidArgument,
                 "comfyui workflow must be a non-empty API-format object {node id: {class_type, "
                 "inputs}}"};
  }
  if (graph.contains("nodes") && graph.contains("links")) {
    return Error{Errc::kInvalidArgument,
                 "comfyui workflow is in the UI format (nodes/links): export it with \"Export "
                 "(API)\""};
  }
  for (const auto& [id, node] : graph.items()) {
    if (!node.is_object() || !node.contains("class_type") || !node["class_type"].is_string()) {
      return Error{
          Errc::kInvalidArgument,
          fmt::format("comfyui workflow is not in API format: node {} has no class_type", id)};
    }
    if (node.contains("inputs") && !node["inputs"].is_object()) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("comfyui workflow node {}: inputs must be an object", id)};
    }
  }
  return Ok();
}

std::optional<fs::path> TemplatesDir(const TaskType& type) {
  auto it = type.settings.find("templates_dir");
  if (it == type.settings.end() || !it->is_string() || it->get<std::string>().empty()) {
    return std::nullopt;
  }
  return fs::path(it->get<std::string>());
}

Result<Json> LoadTemplate(const TaskType& type, const Json& name_json) {
  if (!name_json.is_string()) {
    return Error{Errc::kInvalidArgument, "comfyui payload: template must be a string"};
  }
  std::string name = name_json.get<std::string>();
  if (name.ends_with(".json")) name.resize(name.size() - 5);
  if (!SafeName(name)) {
    return Error{Errc::kInvalidArgument, fmt::format("comfyui template name '{}' is not a plain "
                                                     "file name",
                                                     name)};
  }
  auto dir = TemplatesDir(type);
  if (!dir) {
    return Error{
        Errc::kInvalidArgument,
        fmt::format("task type {} has no templates_dir: send an inline \"workflow\"", type.name)};
  }
  fs::path file = *dir / (name + ".json");
  std::ifstream in(file);
  if (!in) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("comfyui template '{}' not found ({})", name, file.string())};
  }
  std::stringstream text;
  text << in.rdbuf();
  auto json = Json::parse(text.str(), nullptr, false);
  if (json.is_discarded()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("comfyui template '{}' is not valid JSON ({})", name, file.string())};
  }
  return json;
}

// The values placeholders are filled from: params, the payload's other scalar keys (as named
// and upper-cased), run_id, and the image names.
Result<Json> Params(const Json& payload, const std::string& run_id, const Json& image_names) {
  Json values = Json::object();
  if (auto it = payload.find("params"); it != payload.end() && !it->is_null()) {
    if (!it->is_object()) {
      return Error{Errc::kInvalidArgument, "comfyui payload: params must be an object"};
    }
    values = *it;
  }
  for (const auto& [key, value] : payload.items()) {
    if (kReserved.contains(key) || value.is_object() || value.is_array()) continue;
    if (!values.contains(key)) values[key] = value;
    std::string upper = key;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!values.contains(upper)) values[upper] = value;
  }
  if (!values.contains("run_id")) values["run_id"] = run_id;
  for (const auto& [key, value] : image_names.items()) values[key] = value;
  return values;
}

Result<void> CheckImages(const Json& payload) {
  auto it = payload.find("images");
  if (it == payload.end() || it->is_null()) return Ok();
  if (!it->is_object()) {
    return Error{Errc::kInvalidArgument, "comfyui payload: images must be an object"};
  }
  for (const auto& [name, image] : it->items()) {
    if (image.is_string()) {
      auto bytes = DecodeBase64(image.get<std::string>());
      if (!bytes) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("comfyui payload: images.{}: {}", name, bytes.error().message)};
      }
    } else if (image.is_object() && image.contains("run") && image["run"].is_string() &&
               image.contains("file") && image["file"].is_string()) {
      if (!SafeName(image["run"].get<std::string>()) ||
          !SafeSubfolder(image["file"].get<std::string>())) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("comfyui payload: images.{}: the run or file escapes the data "
                                 "dir",
                                 name)};
      }
    } else {
      return Error{Errc::kInvalidArgument,
                   fmt::format("comfyui payload: images.{} must be base64 text or {{\"run\", "
                               "\"file\"}}",
                               name)};
    }
  }
  return Ok();
}

// The filled graph. `image_names` maps image params to their uploaded names.
Result<Json> BuildGraph(const TaskType& type, const Json& payload, const std::string& run_id,
                        const Json& image_names) {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "comfyui payload must be a JSON object"};
  }
  bool has_template = payload.contains("template");
  bool has_workflow = payload.contains("workflow");
  if (has_template == has_workflow) {
    return Error{Errc::kInvalidArgument,
                 "comfyui payload needs exactly one of \"template\" (a name) or \"workflow\" (an "
                 "API-format graph)"};
  }
  Json graph;
  if (has_template) {
    BOOST_OUTCOME_TRY(graph, LoadTemplate(type, payload["template"]));
  } else {
    graph = payload["workflow"];
  }
  BOOST_OUTCOME_TRY(CheckApiFormat(graph));
  BOOST_OUTCOME_TRY(auto values, Params(payload, run_id, image_names));
  auto filled = FillTemplate(graph, values);
  if (!filled) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("comfyui {}: {}",
                             has_template ? fmt::format("template '{}'",
                                                        payload["template"].get<std::string>())
                                          : std::string("workflow"),
                             filled.error().message)};
  }
  BOOST_OUTCOME_TRY(CheckApiFormat(filled.value()));
  return std::move(filled).value();
}

// A 400 from POST /prompt in people's words: each failing node with its class and messages.
std::string DescribeRejection(const std::string& body) {
  auto json = Json::parse(body, nullptr, false);
  if (!json.is_object()) return Excerpt(body);
  std::vector<std::string> lines;
  if (auto it = json.find("node_errors"); it != json.end() && it->is_object()) {
    for (const auto& [id, entry] : it->items()) {
      std::string class_type = entry.value("class_type", "?");
      std::vector<std::string> messages;
      for (const auto& e : entry.value("errors", Json::array())) {
        if (!e.is_object()) continue;
        std::string m = e.value("message", "");
        std::string d = e.value("details", "");
        messages.push_back(d.empty() ? m : fmt::format("{}: {}", m, d));
      }
      std::string joined;
      for (const auto& m : messages) joined += (joined.empty() ? "" : "; ") + m;
      lines.push_back(fmt::format("node {} ({}): {}", id, class_type, joined));
    }
  }
  if (lines.empty() && json.contains("error")) {
    const Json& error = json["error"];
    if (error.is_string()) {
      lines.push_back(error.get<std::string>());  // legacy servers
    } else if (error.is_object()) {
      std::string message = error.value("message", "");
      std::string details = error.value("details", "");
      std::string type = error.value("type", "");
      const Json extra = error.value("extra_info", Json::object());
      std::string where;
      if (extra.is_object() && extra.contains("node_id")) {
        where = fmt::format("node {} ({}): ",
                            extra["node_id"].is_string() ? extra["node_id"].get<std::string>()
                                                         : extra["node_id"].dump(),
                            extra.value("class_type", "?"));
      }
      lines.push_back(fmt::format("{}{}{}{}", where, message,
                                  details.empty() || !where.empty() ? "" : ": " + details,
                                  type.empty() ? "" : fmt::format(" [{}]", type)));
    }
  }
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : "; ") + l;
  return out.empty() ? Excerpt(body) : out;
}

std::string NodeClass(const Json& graph, const std::string& id) {
  if (auto it = graph.find(id); it != graph.end() && it->is_object()) {
    return it->value("class_type", "?");
  }
  return "?";
}

// One attempt's state; lives on Execute's stack.
class Attempt {
 public:
  Attempt(RunContext& ctx, http::Endpoint endpoint, std::string base_path, Json graph)
      : ctx_(ctx),
        endpoint_(std::move(endpoint)),
        base_(std::move(base_path)),
        graph_(std::move(graph)),
        client_(endpoint_, std::chrono::seconds(30)),
        log_(ctx.log_file, std::ios::app) {
    client_id_ = "gpuq-" + ctx.run.id;
    prompt_id_ = NewUuid();
  }

  Result<Outcome> Run(const Json& payload) {
    std::stop_callback on_stop(ctx_.stop, [this] {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      client_.Abort();
      if (ws_) ws_->Abort();
      wake_.notify_all();
    });
    auto result = RunInner(payload);
    if (ctx_.stop.stop_requested()) return Stopped();
    return result;
  }

 private:
  Result<Outcome> RunInner(const Json& payload) {
    BOOST_OUTCOME_TRY(auto image_names, UploadImages(payload));
    if (!image_names.empty()) {
      BOOST_OUTCOME_TRY(graph_, BuildGraph(ctx_.task_type, payload, ctx_.run.id, image_names));
    }
    // The socket first: per-prompt events go only to the socket whose id is the client_id.
    BOOST_OUTCOME_TRY(Connect());
    BOOST_OUTCOME_TRY(Submit());
    BOOST_OUTCOME_TRY(auto entry, Follow());
    return Finish(entry);
  }

  std::string Target(std::string_view path) const { return base_ + std::string(path); }

  void Log(const std::string& line) { log_ << line << "\n" << std::flush; }

  Error Stopped() {
    // Told from this thread, with a fresh client: the attempt's own client is aborted.
    if (submitted_) {
      http::Client client(endpoint_, kStopCallTimeout);
      Json del = {{"delete", Json::array({prompt_id_})}};
      auto q = client.Post(Target("/queue"), del.dump());
      auto i = client.Post(Target("/interrupt"), Json{{"prompt_id", prompt_id_}}.dump());
      Log(fmt::format("stopped: POST /queue delete -> {}, POST /interrupt -> {}",
                      q ? std::to_string(q.value().status) : q.error().message,
                      i ? std::to_string(i.value().status) : i.error().message));
    } else {
      Log("stopped before the prompt was queued");
    }
    return Error{Errc::kUnavailable, "comfyui run stopped"};
  }

  // Sleeps `d` unless stop is requested first.
  void Sleep(milliseconds d) {
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, d, [&] { return stopping_; });
  }

  Result<void> Connect() {
    std::string target = Target("/ws?clientId=" + UrlEncode(client_id_));
    auto ws = http::WebSocket::Connect(endpoint_, target, kConnectTimeout);
    if (!ws) {
      return Error{ws.error().code == Errc::kTimeout ? Errc::kUnavailable : ws.error().code,
                   fmt::format("comfyui at {}:{}: websocket: {}", endpoint_.host, endpoint_.port,
                               ws.error().message)};
    }
    std::lock_guard lock(mutex_);
    if (stopping_) ws.value()->Abort();
    ws_ = std::move(ws).value();
    Log(fmt::format("websocket open {}", target));
    return Ok();
  }

  Result<Json> UploadImages(const Json& payload) {
    Json names = Json::object();
    auto it = payload.find("images");
    if (it == payload.end() || !it->is_object()) return names;
    for (const auto& [name, image] : it->items()) {
      std::string bytes;
      std::string filename = fmt::format("gpuq-{}-{}.png", ctx_.run.id, name);
      if (image.is_string()) {
        BOOST_OUTCOME_TRY(bytes, DecodeBase64(image.get<std::string>()));
      } else {
        fs::path file = ctx_.data_dir / "runs" / image["run"].get<std::string>() /
                        image["file"].get<std::string>();
        std::ifstream in(file, std::ios::binary);
        if (!in) {
          return Error{Errc::kInvalidArgument,
                       fmt::format("comfyui images.{}: cannot read {}", name, file.string())};
        }
        std::stringstream data;
        data << in.rdbuf();
        bytes = data.str();
        filename = fmt::format("gpuq-{}-{}", ctx_.run.id, file.filename().string());
      }
      auto form = http::EncodeForm({{.name = "image",
                                     .value = bytes,
                                     .filename = filename,
                                     .content_type = "application/octet-stream"},
                                    {.name = "type", .value = "input"}});
      auto reply = client_.Request("POST", Target("/upload/image"), form.body, form.content_type);
      if (!reply) return Unreachable(reply.error(), "POST /upload/image");
      auto json = Json::parse(reply.value().body, nullptr, false);
      if (reply.value().status != 200 || !json.is_object() || !json.contains("name") ||
          !json["name"].is_string()) {
        return Error{Errc::kInternal,
                     fmt::format("comfyui POST /upload/image for images.{} "
                                 "replied {}: {}",
                                 name, reply.value().status, Excerpt(reply.value().body))};
      }
      std::string uploaded = json["name"];
      std::string sub = json.value("subfolder", "");
      names[name] = sub.empty() ? uploaded : sub + "/" + uploaded;
      Log(fmt::format("uploaded images.{} as {}", name, names[name].get<std::string>()));
    }
    return names;
  }

  Error Unreachable(const Error& e, std::string_view what) {
    Errc code = e.code == Errc::kTimeout ? Errc::kUnavailable : e.code;
    return Error{code, fmt::format("comfyui at {}:{}: {}: {}", endpoint_.host, endpoint_.port, what,
                                   e.message)};
  }

  Result<void> Submit() {
    Json body = {{"prompt", graph_}, {"client_id", client_id_}, {"prompt_id", prompt_id_}};
    Log(fmt::format("POST /prompt prompt_id={} client_id={} nodes={}", prompt_id_, client_id_,
                    graph_.size()));
    submitted_ = true;  // from here on, a stop tells the server
    auto reply = client_.Post(Target("/prompt"), body.dump());
    if (!reply) return Unreachable(reply.error(), "POST /prompt");
    const auto& r = reply.value();
    Log(fmt::format("POST /prompt -> {} {}", r.status, Excerpt(r.body)));
    if (r.status == 400) {
      submitted_ = false;
      return Error{Errc::kInvalidArgument,
                   fmt::format("comfyui rejected the workflow: {}", DescribeRejection(r.body))};
    }
    if (r.status < 200 || r.status >= 300) {
      return Error{Errc::kInternal,
                   fmt::format("comfyui POST /prompt replied {}: {}", r.status, Excerpt(r.body))};
    }
    auto json = Json::parse(r.body, nullptr, false);
    if (json.is_object()) {
      if (auto it = json.find("prompt_id"); it != json.end() && it->is_string()) {
        prompt_id_ = it->get<std::string>();  // an old server ignores ours and makes its own
      }
      if (auto it = json.find("node_errors"); it != json.end() && it->is_object() && !it->empty()) {
        Log(fmt::format("warning: some outputs failed validation and are skipped: {}", it->dump()));
      }
    }
    return Ok();
  }

  void Report(const std::string& node, int value, int max) {
    double total = std::max<size_t>(graph_.size(), 1);
    size_t finished = started_.size();
    if (!node.empty() && started_.contains(node)) --finished;  // the current one is running
    double done = static_cast<double>(std::min(finished + cached_.size(), graph_.size()));
    double fraction = done;
    std::string message;
    if (!node.empty()) {
      message = fmt::format("node {} {}", node, NodeClass(graph_, node));
      if (max > 0) {
        fraction += std::clamp(static_cast<double>(value) / max, 0.0, 1.0);
        message += fmt::format(" {}/{}", value, max);
      }
    }
    ctx_.report_progress(Progress{std::clamp(fraction / total, 0.0, 1.0), message});
  }

  // Handles one text frame; true when it completes our prompt.
  bool OnEvent(const std::string& text) {
    auto json = Json::parse(text, nullptr, false);
    if (!json.is_object() || !json.contains("type") || !json["type"].is_string()) {
      ++malformed_;
      Log(fmt::format("ignored a malformed websocket message: {}", Excerpt(text)));
      return false;
    }
    std::string type = json["type"];
    const Json data = json.value("data", Json::object());
    if (!data.is_object()) return false;
    if (type == "status" || type == "feature_flags") return false;
    auto pid = data.find("prompt_id");
    if (pid == data.end() || !pid->is_string() || *pid != prompt_id_) return false;
    auto node_of = [&](const char* key) -> std::string {
      auto it = data.find(key);
      if (it == data.end() || it->is_null()) return "";
      return it->is_string() ? it->get<std::string>() : it->dump();
    };
    if (type == "execution_start") {
      Log("execution_start");
    } else if (type == "execution_cached") {
      for (const auto& n : data.value("nodes", Json::array())) {
        cached_.insert(n.is_string() ? n.get<std::string>() : n.dump());
      }
      Log(fmt::format("execution_cached {}", data.value("nodes", Json::array()).dump()));
    } else if (type == "executing") {
      std::string node = node_of("node");
      if (node.empty()) {
        Log("executing node=null: finished");
        return true;
      }
      current_ = node;
      started_.insert(node);
      Log(fmt::format("executing node {} {}", node, NodeClass(graph_, node)));
      Report(node, 0, 0);
    } else if (type == "progress") {
      std::string node = node_of("node");
      if (node.empty()) node = current_;
      int value = data.value("value", 0);
      int max = data.value("max", 0);
      Report(node, value, max);
    } else if (type == "executed") {
      Log(fmt::format("executed node {} output {}", node_of("node"),
                      Excerpt(data.value("output", Json()).dump())));
    } else if (type == "execution_success" || type == "execution_error" ||
               type == "execution_interrupted") {
      Log(fmt::format("{} {}", type, Excerpt(data.dump())));
      return true;
    }
    return false;
  }

  // GET /history/{id}: the entry once done, nullopt while pending/running.
  Result<std::optional<Json>> History() {
    auto reply = client_.Get(Target("/history/" + UrlEncode(prompt_id_)));
    if (!reply) return Unreachable(reply.error(), "GET /history");
    if (reply.value().status != 200) {
      return Error{Errc::kInternal, fmt::format("comfyui GET /history replied {}: {}",
                                                reply.value().status, Excerpt(reply.value().body))};
    }
    auto json = Json::parse(reply.value().body, nullptr, false);
    if (!json.is_object()) {
      return Error{Errc::kInternal,
                   fmt::format("comfyui GET /history: not JSON: {}", Excerpt(reply.value().body))};
    }
    if (auto it = json.find(prompt_id_); it != json.end() && it->is_object()) return *it;
    return std::optional<Json>();
  }

  // Follows events until the prompt is finished; returns its history entry.
  Result<Json> Follow() {
    auto last_event = Clock::now();
    auto last_answer = Clock::now();
    bool finished = false;
    while (!ctx_.stop.stop_requested()) {
      if (finished) break;
      if (ws_) {
        auto msg = ws_->Read(kReadSlice);
        if (msg) {
          last_event = Clock::now();
          last_answer = last_event;
          if (!msg.value().binary && OnEvent(msg.value().data)) finished = true;
          continue;
        }
        if (ctx_.stop.stop_requested()) break;
        if (msg.error().code != Errc::kTimeout) {
          Log(fmt::format("websocket lost: {}; following /history and reconnecting",
                          msg.error().message));
          std::lock_guard lock(mutex_);
          ws_.reset();
        } else if (Clock::now() - last_event < kQuietPoll) {
          continue;
        }
      }
      // Quiet or no socket: the history says whether it finished meanwhile.
      auto entry = History();
      if (entry && entry.value()) return *entry.value();
      if (entry || !ws_) {
        if (entry) last_answer = Clock::now();
      }
      last_event = Clock::now();
      if (!ws_) {
        Sleep(kRecoverPoll);
        if (ctx_.stop.stop_requested()) break;
        auto again = http::WebSocket::Connect(
            endpoint_, Target("/ws?clientId=" + UrlEncode(client_id_)), kConnectTimeout);
        if (again) {
          std::lock_guard lock(mutex_);
          ws_ = std::move(again).value();
          if (stopping_) ws_->Abort();
          last_answer = Clock::now();
          Log("websocket reconnected");
          // It may have finished before the socket was back: no event would come for it.
          auto after = History();
          if (after && after.value()) return *after.value();
        } else if (Clock::now() - last_answer > kGoneAfter) {
          return Error{
              Errc::kUnavailable,
              fmt::format("comfyui at {}:{} went away mid-run (prompt {}): {}", endpoint_.host,
                          endpoint_.port, prompt_id_, again.error().message)};
        }
      }
    }
    if (ctx_.stop.stop_requested()) return Error{Errc::kUnavailable, "stopped"};
    // Finished: the history entry is written right around the completion event.
    auto deadline = Clock::now() + kGoneAfter;
    while (!ctx_.stop.stop_requested()) {
      auto entry = History();
      if (entry && entry.value()) return *entry.value();
      if (!entry) Log(fmt::format("history: {}", entry.error().message));
      if (Clock::now() > deadline) {
        return Error{
            Errc::kInternal,
            fmt::format("comfyui finished prompt {} but /history has no entry for it", prompt_id_)};
      }
      Sleep(milliseconds(50));
    }
    return Error{Errc::kUnavailable, "stopped"};
  }

  Error FailureFrom(const Json& entry) {
    const Json status = entry.value("status", Json::object());
    for (const auto& m : status.value("messages", Json::array())) {
      if (!m.is_array() || m.size() != 2 || !m[0].is_string() || !m[1].is_object()) continue;
      std::string type = m[0];
      const Json& d = m[1];
      auto id = d.contains("node_id") ? (d["node_id"].is_string() ? d["node_id"].get<std::string>()
                                                                  : d["node_id"].dump())
                                      : std::string("?");
      std::string cls = d.value("node_type", NodeClass(graph_, id));
      if (type == "execution_error") {
        std::string message = d.value("exception_message", "");
        std::string lower = message;
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        Errc code = lower.find("out of memory") != std::string::npos ? Errc::kUnavailable
                                                                     : Errc::kInvalidArgument;
        while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back()))) {
          message.pop_back();
        }
        return Error{code, fmt::format("comfyui node {} ({}): {}", id, cls, message)};
      }
      if (type == "execution_interrupted") {
        return Error{Errc::kInternal,
                     fmt::format("comfyui prompt {} was interrupted at node {} ({}) by someone "
                                 "else",
                                 prompt_id_, id, cls)};
      }
    }
    return Error{Errc::kInternal, fmt::format("comfyui prompt {} ended with status {}", prompt_id_,
                                              status.value("status_str", "?"))};
  }

  Result<Outcome> Finish(const Json& entry) {
    const Json status = entry.value("status", Json::object());
    std::string status_str = status.value("status_str", "");
    Log(fmt::format("history status {}", status_str.empty() ? "(none)" : status_str));
    if (status_str == "error") return FailureFrom(entry);

    Outcome outcome;
    Json outputs = Json::object();
    std::set<fs::path> seen;
    const Json out = entry.value("outputs", Json::object());
    for (const auto& [node, ui] : out.items()) {
      if (!ui.is_object()) continue;
      Json files = Json::array();
      for (const auto& [key, list] : ui.items()) {
        if (!list.is_array()) continue;
        for (const auto& item : list) {
          if (!item.is_object() || !item.contains("filename") || !item["filename"].is_string() ||
              !item.contains("type") || !item["type"].is_string()) {
            continue;
          }
          std::string filename = item["filename"];
          std::string type = item["type"];
          std::string sub = item.value("subfolder", "");
          if (!SafeName(filename) || !SafeSubfolder(sub) || !SafeName(type)) {
            return Error{Errc::kInternal,
                         fmt::format("comfyui node {} output '{}' (subfolder '{}') escapes the run "
                                     "dir: refused",
                                     node, filename, sub)};
          }
          fs::path local = (type == "output" ? fs::path() : fs::path(type)) / sub / filename;
          local = (ctx_.run_dir / local).lexically_normal();
          if (seen.insert(local).second) {
            BOOST_OUTCOME_TRY(Download(filename, sub, type, local));
          }
          std::string rel = local.lexically_relative(ctx_.data_dir).generic_string();
          files.push_back(rel);
          if (std::find(outcome.files.begin(), outcome.files.end(), rel) == outcome.files.end()) {
            outcome.files.push_back(rel);
          }
        }
      }
      if (!files.empty()) outputs[node] = files;
    }
    outcome.result = {{"prompt_id", prompt_id_},
                      {"status", status_str.empty() ? "success" : status_str},
                      {"outputs", outputs},
                      {"files", outcome.files}};
    if (malformed_ > 0) outcome.result["malformed_messages"] = malformed_;
    ctx_.report_progress(Progress{1.0, "done"});
    return outcome;
  }

  Result<void> Download(const std::string& filename, const std::string& sub,
                        const std::string& type, const fs::path& local) {
    std::string target = Target(fmt::format("/view?filename={}&subfolder={}&type={}",
                                            UrlEncode(filename), UrlEncode(sub), UrlEncode(type)));
    auto reply = client_.Get(target);
    if (!reply) return Unreachable(reply.error(), "GET /view");
    if (reply.value().status != 200) {
      return Error{Errc::kInternal,
                   fmt::format("comfyui GET {} replied {}", target, reply.value().status)};
    }
    std::error_code ec;
    fs::create_directories(local.parent_path(), ec);
    std::ofstream file(local, std::ios::binary | std::ios::trunc);
    file.write(reply.value().body.data(), static_cast<std::streamsize>(reply.value().body.size()));
    file.close();
    if (!file) {
      return Error{Errc::kInternal, fmt::format("cannot write {}", local.string())};
    }
    Log(fmt::format("downloaded {} ({} bytes)", local.string(), reply.value().body.size()));
    return Ok();
  }

  RunContext& ctx_;
  http::Endpoint endpoint_;
  std::string base_;  // the service URL's path ("" or "/comfy")
  Json graph_;
  http::Client client_;
  std::ofstream log_;
  std::string client_id_;
  std::string prompt_id_;
  bool submitted_ = false;
  std::mutex mutex_;  // guards ws_ (replaced on reconnect) and stopping_ against the stop callback
  std::condition_variable wake_;
  std::unique_ptr<http::WebSocket> ws_;
  bool stopping_ = false;
  std::set<std::string> started_, cached_;
  std::string current_;
  int malformed_ = 0;
};

}  // namespace

std::vector<SettingProblem> ComfyUiConnector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  for (const auto& [key, value] : type.settings.items()) {
    if (key != "templates_dir") {
      problems.push_back({key, "unknown setting (comfyui knows templates_dir)"});
      continue;
    }
    std::error_code ec;
    if (!value.is_string() || value.get<std::string>().empty()) {
      problems.push_back({key, "must be a folder path"});
    } else if (!fs::is_directory(value.get<std::string>(), ec)) {
      problems.push_back({key, fmt::format("{} is not a folder", value.get<std::string>())});
    }
  }
  return problems;
}

Result<void> ComfyUiConnector::Validate(const TaskType& type, const Json& payload) const {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "comfyui payload must be a JSON object"};
  }
  BOOST_OUTCOME_TRY(CheckImages(payload));
  Json image_names = Json::object();
  if (auto it = payload.find("images"); it != payload.end() && it->is_object()) {
    for (const auto& [name, image] : it->items()) image_names[name] = "upload.png";
  }
  BOOST_OUTCOME_TRY(BuildGraph(type, payload, "run", image_names));
  return Ok();
}

Result<Outcome> ComfyUiConnector::Execute(RunContext& ctx) {
  if (ctx.service_url.empty()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("task type {} has no service URL: comfyui needs a service-bound "
                             "task type",
                             ctx.task_type.name)};
  }
  BOOST_OUTCOME_TRY(auto base, http::ParseHttpUrl(ctx.service_url));
  std::string base_path = base.target;
  if (auto q = base_path.find('?'); q != std::string::npos) base_path.resize(q);
  while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
  BOOST_OUTCOME_TRY(CheckImages(ctx.run.payload));
  Json placeholder_names = Json::object();
  if (auto it = ctx.run.payload.find("images"); it != ctx.run.payload.end() && it->is_object()) {
    for (const auto& [name, image] : it->items()) placeholder_names[name] = "upload.png";
  }
  // Built once before anything is sent so a bad payload fails without touching the service;
  // rebuilt with the uploaded names when there are images.
  BOOST_OUTCOME_TRY(auto graph,
                    BuildGraph(ctx.task_type, ctx.run.payload, ctx.run.id, placeholder_names));
  Attempt attempt(ctx, base.endpoint, base_path, std::move(graph));
  return attempt.Run(ctx.run.payload);
}

}  // namespace gpuq::connectors
