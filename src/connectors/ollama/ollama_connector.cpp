#include "connectors/ollama/ollama_connector.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <stop_token>

#include "connectors/service_error.hpp"
#include "http/client.hpp"

namespace gpuq::connectors {

namespace {

constexpr size_t kErrorExcerpt = 200;
constexpr auto kProgressEvery = std::chrono::milliseconds(200);

// Go's time.ParseDuration grammar: [-+]("0" | (number unit)+), units ns us µs μs ms s m h.
std::string GoDurationProblem(const std::string& text) {
  auto quoted = Json(text).dump();
  std::string_view s = text;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s == "0") return {};
  if (s.empty()) return "time: invalid duration " + quoted;
  while (!s.empty()) {
    size_t i = 0;
    bool digits = false;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
    }
    if (!digits) return "time: invalid duration " + quoted;
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && s[u] != '.' && !std::isdigit(static_cast<unsigned char>(s[u]))) ++u;
    if (u == 0) return "time: missing unit in duration " + quoted;
    std::string_view unit = s.substr(0, u);
    if (unit != "ns" && unit != "us" && unit != "\xc2\xb5s" && unit != "\xce\xbcs" &&
        unit != "ms" && unit != "s" && unit != "m" && unit != "h") {
      return fmt::format("time: unknown unit {} in duration {}", Json(std::string(unit)).dump(),
                         quoted);
    }
    s.remove_prefix(u);
  }
  return {};
}

std::string Excerpt(std::string_view text) {
  if (text.size() <= kErrorExcerpt) return std::string(text);
  return std::string(text.substr(0, kErrorExcerpt)) + "...";
}

std::string JoinTarget(std::string base, const std::string& path) {
  if (auto q = base.find('?'); q != std::string::npos) base.resize(q);
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + path;
}

bool HasString(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() && !it->get<std::string>().empty();
}

// What one run asks for, from the payload and the type's settings (Validate has passed).
struct Request {
  bool chat = false;
  std::string model;
  Json body;
  std::optional<int> num_predict;
};

Result<Request> BuildRequest(const TaskType& type, const Json& payload) {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "ollama payload must be a JSON object"};
  }
  const Json& settings = type.settings;
  Request request;
  if (HasString(payload, "model")) {
    request.model = payload["model"].get<std::string>();
  } else if (settings.is_object() && HasString(settings, "model")) {
    request.model = settings["model"].get<std::string>();
  } else {
    return Error{
        Errc::kInvalidArgument,
        fmt::format("ollama payload needs a \"model\" (task type {} sets none)", type.name)};
  }

  bool has_prompt = payload.contains("prompt") && !payload["prompt"].is_null();
  bool has_messages = payload.contains("messages") && !payload["messages"].is_null();
  if (has_prompt && !payload["prompt"].is_string()) {
    return Error{Errc::kInvalidArgument, "ollama payload \"prompt\" must be a string"};
  }
  if (has_prompt && payload["prompt"].get<std::string>().empty()) has_prompt = false;
  if (!has_prompt && !has_messages) {
    return Error{Errc::kInvalidArgument,
                 "ollama payload needs a \"prompt\" (generate) or \"messages\" (chat)"};
  }
  if (has_messages) {
    const Json& messages = payload["messages"];
    if (!messages.is_array() || messages.empty()) {
      return Error{Errc::kInvalidArgument,
                   "ollama payload \"messages\" must be a non-empty array of {role, content}"};
    }
    for (size_t i = 0; i < messages.size(); ++i) {
      const Json& m = messages[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
          !m.contains("content") || !m["content"].is_string()) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("ollama payload messages[{}] must be {{\"role\": string, "
                                 "\"content\": string}}",
                                 i)};
      }
    }
  }
  if (payload.contains("system") && !payload["system"].is_string()) {
    return Error{Errc::kInvalidArgument, "ollama payload \"system\" must be a string"};
  }
  if (payload.contains("options") && !payload["options"].is_object()) {
    return Error{Errc::kInvalidArgument, "ollama payload \"options\" must be an object"};
  }
  if (payload.contains("format") && !payload["format"].is_string() &&
      !payload["format"].is_object()) {
    return Error{Errc::kInvalidArgument,
                 "ollama payload \"format\" must be \"json\" or a JSON schema object"};
  }

  std::string mode;
  if (payload.contains("mode")) {
    if (!payload["mode"].is_string()) {
      return Error{Errc::kInvalidArgument, "ollama payload \"mode\" must be generate or chat"};
    }
    mode = payload["mode"].get<std::string>();
  } else if (has_messages && !has_prompt) {
    mode = "chat";
  } else {
    mode = settings.is_object() ? settings.value("mode", std::string("generate")) : "generate";
  }
  if (mode != "generate" && mode != "chat") {
    return Error{Errc::kInvalidArgument,
                 fmt::format("ollama mode must be generate or chat, not \"{}\"", mode)};
  }
  request.chat = mode == "chat";
  if (!request.chat && !has_prompt) {
    return Error{Errc::kInvalidArgument,
                 "ollama generate mode needs a \"prompt\" (send \"messages\" in chat mode)"};
  }

  const Json* keep_alive = nullptr;
  if (payload.contains("keep_alive")) {
    keep_alive = &payload["keep_alive"];
  } else if (settings.is_object() && settings.contains("keep_alive")) {
    keep_alive = &settings["keep_alive"];
  }
  if (keep_alive) {
    if (auto problem = KeepAliveProblem(*keep_alive); !problem.empty()) {
      return Error{Errc::kInvalidArgument, "ollama keep_alive: " + problem};
    }
  }

  Json& body = request.body;
  body["model"] = request.model;
  body["stream"] = true;
  if (request.chat) {
    if (has_messages) {
      body["messages"] = payload["messages"];
      if (payload.contains("system")) {
        body["messages"].insert(body["messages"].begin(),
                                Json{{"role", "system"}, {"content", payload["system"]}});
      }
    } else {
      body["messages"] = Json::array();
      if (payload.contains("system")) {
        body["messages"].push_back(Json{{"role", "system"}, {"content", payload["system"]}});
      }
      body["messages"].push_back(Json{{"role", "user"}, {"content", payload["prompt"]}});
    }
  } else {
    body["prompt"] = payload["prompt"];
    if (payload.contains("system")) body["system"] = payload["system"];
  }
  if (payload.contains("options")) {
    body["options"] = payload["options"];
    if (auto n = payload["options"].find("num_predict");
        n != payload["options"].end() && n->is_number_integer() && n->get<int>() > 0) {
      request.num_predict = n->get<int>();
    }
  }
  if (payload.contains("format")) body["format"] = payload["format"];
  if (keep_alive) body["keep_alive"] = *keep_alive;
  return request;
}

double Ms(const Json& line, const char* key) {
  auto it = line.find(key);
  if (it == line.end() || !it->is_number()) return 0;
  return std::round(it->get<double>() / 1e4) / 100.0;  // ns -> ms, two decimals
}

Error StatusError(int status, const std::string& body, const std::string& where) {
  Errc code = Errc::kInternal;
  if (status == 400 || status == 404) code = Errc::kInvalidArgument;
  if (status == 429 || status == 502 || status == 503 || status == 504) code = Errc::kUnavailable;
  return Error{code, fmt::format("ollama {} replied {}: {}", where, status, ServiceErrorText(body))};
}

}  // namespace

std::string KeepAliveProblem(const Json& value) {
  if (value.is_number()) return {};
  if (value.is_string()) return GoDurationProblem(value.get<std::string>());
  return fmt::format("must be a number of seconds or a duration string such as \"10m\", not {}",
                     value.type_name());
}

Result<void> OllamaConnector::Validate(const TaskType& type, const Json& payload) const {
  BOOST_OUTCOME_TRY(BuildRequest(type, payload));
  return Ok();
}

std::vector<SettingProblem> OllamaConnector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  if (!type.settings.is_object()) return problems;
  for (const auto& [key, value] : type.settings.items()) {
    if (key == "model") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        problems.push_back({key, "must be a model name such as \"llama3.2\""});
      }
    } else if (key == "keep_alive") {
      if (auto problem = KeepAliveProblem(value); !problem.empty()) {
        problems.push_back({key, problem});
      }
    } else if (key == "mode") {
      if (!value.is_string() || (value != "generate" && value != "chat")) {
        problems.push_back({key, "must be \"generate\" or \"chat\""});
      }
    } else {
      problems.push_back({key, "unknown setting"});
    }
  }
  return problems;
}

Result<Outcome> OllamaConnector::Execute(RunContext& ctx) {
  if (ctx.service_url.empty()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("task type {} has no service URL: the ollama connector needs a "
                             "service-bound task type",
                             ctx.task_type.name)};
  }
  BOOST_OUTCOME_TRY(auto request, BuildRequest(ctx.task_type, ctx.run.payload));
  BOOST_OUTCOME_TRY(auto base, http::ParseHttpUrl(ctx.service_url));
  const char* where = request.chat ? "chat" : "generate";
  std::string target = JoinTarget(base.target, request.chat ? "/api/chat" : "/api/generate");

  // The socket deadline only catches a server gone silent (loading a big model can take a
  // while); the run's timeout comes through ctx.stop.
  int timeout_s = ctx.run.timeout_s > 0 ? ctx.run.timeout_s : ctx.task_type.timeout_s;
  http::Client client(base.endpoint, std::chrono::seconds(std::max(timeout_s, 1)));
  std::stop_callback abort_on_stop(ctx.stop, [&client] { client.Abort(); });

  std::ofstream log(ctx.log_file, std::ios::app);
  log << fmt::format("POST http://{}:{}{} model={}\n", base.endpoint.host, base.endpoint.port,
                     target, request.model)
      << std::flush;

  std::string pending;  // bytes of a line not complete yet
  std::string text;
  Json final_line;
  std::optional<Error> failure;
  int tokens = 0;
  auto last_progress = std::chrono::steady_clock::time_point{};
  auto started = std::chrono::steady_clock::now();

  auto on_line = [&](std::string_view line) -> bool {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return true;
    auto json = Json::parse(line, nullptr, false);
    if (json.is_discarded() || !json.is_object()) {
      failure = Error{Errc::kInternal,
                      fmt::format("ollama {} sent a line that is not a JSON object after {} "
                                  "tokens: {}",
                                  where, tokens, Excerpt(line))};
      return false;
    }
    if (auto error = json.find("error"); error != json.end()) {
      failure = Error{Errc::kInternal,
                      fmt::format("ollama {} failed after {} tokens: {}", where, tokens,
                                  error->is_string() ? error->get<std::string>() : error->dump())};
      return false;
    }
    if (request.chat) {
      if (auto m = json.find("message"); m != json.end() && m->is_object()) {
        if (auto c = m->find("content"); c != m->end() && c->is_string()) {
          text += c->get<std::string>();
        }
      }
    } else if (auto r = json.find("response"); r != json.end() && r->is_string()) {
      text += r->get<std::string>();
    }
    if (json.value("done", false)) {
      final_line = std::move(json);
      return false;  // the last line: nothing more to read
    }
    ++tokens;
    auto now = std::chrono::steady_clock::now();
    if (ctx.report_progress && (tokens == 1 || now - last_progress >= kProgressEvery)) {
      last_progress = now;
      Progress progress;
      progress.message = fmt::format("{} tokens", tokens);
      if (request.num_predict) {
        progress.fraction = std::min(1.0, double(tokens) / *request.num_predict);
      }
      ctx.report_progress(progress);
    }
    return true;
  };

  auto reply = client.StreamBody(
      "POST", target, request.body.dump(), "application/json", [&](std::string_view data) {
        pending.append(data);
        size_t start = 0;
        for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
          if (!on_line(std::string_view(pending).substr(start, nl - start))) {
            pending.clear();
            return false;
          }
        }
        pending.erase(0, start);
        return true;
      });
  // A last line without its newline.
  if (reply && reply.value().status / 100 == 2 && !failure && final_line.is_null() &&
      !pending.empty()) {
    on_line(pending);
  }
  auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);

  if (ctx.stop.stop_requested()) {
    log << fmt::format("stopped after {} ms, {} tokens\n", took.count(), tokens);
    return Error{Errc::kUnavailable, fmt::format("ollama {} stopped", where)};
  }
  if (!reply) {
    log << fmt::format("failed after {} ms, {} tokens: {}\n", took.count(), tokens,
                       reply.error().message);
    return Error{reply.error().code,
                 fmt::format("ollama {} at {}: {}", where, ctx.service_url, reply.error().message)};
  }
  if (reply.value().status / 100 != 2) {
    log << fmt::format("status {} after {} ms: {}\n", reply.value().status, took.count(),
                       reply.value().body);
    return StatusError(reply.value().status, reply.value().body, where);
  }
  if (failure) {
    log << failure->message << "\n";
    return *failure;
  }
  if (final_line.is_null()) {
    log << fmt::format("stream ended after {} ms and {} tokens without done:true\n", took.count(),
                       tokens);
    return Error{
        Errc::kUnavailable,
        fmt::format("ollama {} stream cut off after {} tokens (no done:true line)", where, tokens)};
  }

  auto response_file = ctx.run_dir / "response.txt";
  {
    std::ofstream out(response_file, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) {
      return Error{Errc::kInternal, fmt::format("cannot write {}", response_file.string())};
    }
  }

  Outcome outcome;
  Json& result = outcome.result;
  result["model"] = final_line.value("model", request.model);
  if (request.chat) {
    result["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    result["response"] = text;
  }
  result["done_reason"] = final_line.value("done_reason", std::string());
  result["prompt_eval_count"] = final_line.value("prompt_eval_count", 0);
  result["eval_count"] = final_line.value("eval_count", tokens);
  result["total_duration_ms"] = Ms(final_line, "total_duration");
  result["eval_duration_ms"] = Ms(final_line, "eval_duration");
  double eval_s = final_line.value("eval_duration", 0.0) / 1e9;
  int eval_count = result["eval_count"].get<int>();
  result["tokens_per_s"] = eval_s > 0 ? std::round(eval_count / eval_s * 100) / 100 : 0.0;
  std::string relative = std::filesystem::relative(response_file, ctx.data_dir).generic_string();
  result["response_file"] = relative;
  outcome.files.push_back(relative);
  log << fmt::format("done after {} ms: {} tokens, done_reason {}\n", took.count(), eval_count,
                     result["done_reason"].get<std::string>());
  if (ctx.report_progress) {
    ctx.report_progress(Progress{1.0, fmt::format("{} tokens", eval_count)});
  }
  return outcome;
}

Result<void> OllamaConnector::Unload(const std::string& base_url, const std::string& model) {
  BOOST_OUTCOME_TRY(auto base, http::ParseHttpUrl(base_url));
  http::Client client(base.endpoint, std::chrono::seconds(30));
  Json body = {{"model", model}, {"keep_alive", 0}};
  auto reply = client.Post(JoinTarget(base.target, "/api/generate"), body.dump());
  if (!reply) {
    return Error{reply.error().code,
                 fmt::format("ollama unload at {}: {}", base_url, reply.error().message)};
  }
  if (reply.value().status / 100 != 2) {
    return StatusError(reply.value().status, reply.value().body, "unload");
  }
  return Ok();
}

}  // namespace gpuq::connectors
