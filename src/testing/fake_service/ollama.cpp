// The Ollama personality (docs/protocols.md section 4): a fixed set of pulled models, a table of
// loaded models with their keep_alive expiry, and generate/chat streaming NDJSON.
//
// Routes: GET / and HEAD / ("Ollama is running"), GET /api/version, GET /api/tags,
// GET /api/ps, POST /api/generate, POST /api/chat.
//
// Models (kModels): llama3.2:latest, qwen2.5:7b, tinyllama:latest. Names are normalised to
// name:tag (a missing tag is "latest"); any other model is a 404
// {"error":"model 'x' not found, try pulling it first"}. A body that is not JSON, a missing
// model and a bad keep_alive are 400 {"error": ...}.
//
// Generation: the reply is num_predict tokens (options.num_predict, default 12; done_reason
// "length" when num_predict was given, "stop" otherwise), one per --work-ms. With stream true
// (the default) the reply is chunked application/x-ndjson, one line per token
// ({"model","created_at","response":"<delta>","done":false}, chat: "message":{"role":
// "assistant","content":"<delta>"}), then a final done:true line with done_reason, context
// (generate only), total_duration, load_duration, prompt_eval_count, prompt_eval_duration,
// eval_count and eval_duration (nanoseconds). With stream false: one object with the whole text.
// /api/generate with no prompt (or /api/chat with no messages) only loads the model: one object,
// done_reason "load"; with keep_alive 0 it unloads it instead: done_reason "unload".
//
// keep_alive, as Ollama's api.Duration: a JSON number is seconds, a string is a Go duration
// ("10m", "1h30m", "0"); a bare numeric string such as "300" is a 400 ("time: missing unit in
// duration \"300\""); any negative value keeps the model loaded forever; 0 unloads it once this
// request is done; absent means 5m. Expired models leave the table when it is next read.
// GET /api/ps lists the loaded models: size, size_vram (--vram-mb MiB when set, else size) and
// expires_at (RFC3339 UTC; about 292 years ahead for "forever").
//
// Faults, per request (the prompt, system or any message content contains the magic word) or for
// every generating request (--fault MODE):
//   FAKE_MIDSTREAM_ERROR  midstream_error  after 2 tokens a line {"error":"..."} under the 200,
//                                          then the body ends (stream false: a 500 {"error"})
//   FAKE_DROP             drop             after 2 tokens the connection is reset
//   FAKE_MALFORMED        malformed        after 2 tokens a line that is not JSON, then the rest
//                                          (stream false: a 200 body that is not JSON)
//   FAKE_500              http500          500 {"error":"..."} before anything is streamed
//   FAKE_TRUNCATE         truncate         after 2 tokens the body ends cleanly, without its
//                                          done:true line (stream false: an empty 200 body)
// Log lines: "<name> ollama generate model=<m> tokens=<n>", "... load model=<m>",
// "... unload model=<m>", "... client gone model=<m>".
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "testing/fake_service/fake_server.hpp"

namespace gpuq::fake {

namespace {

using Status = bhttp::status;
using SysClock = std::chrono::system_clock;

struct Model {
  std::string name;
  int64_t size;
  std::string digest;
  std::string family;
  std::string parameter_size;
  std::string quantization;
};

const std::vector<Model> kModels = {
    {"llama3.2:latest", 2019393189,
     "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72", "llama", "3.2B", "Q4_K_M"},
    {"qwen2.5:7b", 4683087332, "845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e",
     "qwen2", "7.6B", "Q4_K_M"},
    {"tinyllama:latest", 637700138,
     "2644915ede352ea7bdfaff0bfac0be74c719d5d5202acb63a6fb095b52f394a4", "llama", "1B", "Q4_0"},
};

const std::vector<std::string> kWords = {
    "The", "fake",    "model", "answers", "every", "question", "with",  "the", "same", "calm",
    "and", "patient", "words", "until",   "it",    "is",       "asked", "to",  "stop"};

constexpr int kDefaultTokens = 12;
constexpr int kFaultAfterTokens = 2;

std::string Normalise(std::string name) {
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) {
    name += ":latest";
  }
  return name;
}

const Model* FindModel(const std::string& name) {
  std::string wanted = Normalise(name);
  for (const auto& model : kModels) {
    if (model.name == wanted) return &model;
  }
  return nullptr;
}

// RFC3339 in UTC with nanoseconds, as Go's time.Time marshals.
std::string Rfc3339(SysClock::time_point t) {
  auto since = t.time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count();
  std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09d}Z", buf, nanos);
}

// Far-future expiry (MaxInt64 ns from now is about 292 years), without overflowing time_point.
std::string ForeverRfc3339() {
  std::time_t tt = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  tm.tm_year += 292;
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string GoQuote(const std::string& s) { return Json(s).dump(); }

// Go's time.ParseDuration: nanoseconds, or the error text Go gives.
struct Parsed {
  double nanos = 0;
  std::string error;
};
Parsed ParseGoDuration(const std::string& text) {
  Parsed out;
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return out;
  if (s.empty()) {
    out.error = "time: invalid duration " + GoQuote(text);
    return out;
  }
  static const std::map<std::string, double, std::less<>> kUnits = {
      {"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
      {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
  double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    bool digits = false;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
    }
    if (!digits) {
      out.error = "time: invalid duration " + GoQuote(text);
      return out;
    }
    double value = std::stod(std::string(s.substr(0, i)));
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && s[u] != '.' && !std::isdigit(static_cast<unsigned char>(s[u]))) ++u;
    if (u == 0) {
      out.error = "time: missing unit in duration " + GoQuote(text);
      return out;
    }
    auto unit = kUnits.find(s.substr(0, u));
    if (unit == kUnits.end()) {
      out.error = fmt::format("time: unknown unit {} in duration {}",
                              GoQuote(std::string(s.substr(0, u))), GoQuote(text));
      return out;
    }
    total += value * unit->second;
    s.remove_prefix(u);
  }
  out.nanos = negative ? -total : total;
  return out;
}

// keep_alive as api.Duration: nullopt = forever; an error text for a 400.
struct KeepAlive {
  std::optional<std::chrono::nanoseconds> duration = std::chrono::minutes(5);  // nullopt: forever
  std::string error;
  bool Unloads() const { return duration && duration->count() == 0; }
};
KeepAlive ParseKeepAlive(const Json& body) {
  KeepAlive out;
  auto it = body.find("keep_alive");
  if (it == body.end() || it->is_null()) return out;
  double nanos = 0;
  if (it->is_number()) {
    nanos = it->get<double>() * 1e9;
  } else if (it->is_string()) {
    auto parsed = ParseGoDuration(it->get<std::string>());
    if (!parsed.error.empty()) {
      out.error = parsed.error;
      return out;
    }
    nanos = parsed.nanos;
  } else {
    out.error = fmt::format("Unsupported type: '{}'", it->type_name());
    return out;
  }
  if (nanos < 0) {
    out.duration.reset();
  } else {
    out.duration = std::chrono::nanoseconds(static_cast<int64_t>(std::min(nanos, 9.2e18)));
  }
  return out;
}

struct Loaded {
  const Model* model;
  std::optional<SysClock::time_point> expires;  // nullopt: forever
};

int64_t Nanos(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

int CountWords(const std::string& text) {
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = std::isspace(static_cast<unsigned char>(c));
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

class Ollama : public Personality {
 public:
  explicit Ollama(const Options& options) : options_(options) {}

  bool Handle(Exchange& ex) override {
    std::string path(ex.Path());
    std::string method = ex.Method();
    if (path == "/" && (method == "GET" || method == "HEAD")) {
      if (method == "HEAD") {
        ex.ReplyEmpty(Status::ok);
      } else {
        ex.Reply(Status::ok, "Ollama is running", "text/plain; charset=utf-8");
      }
      return true;
    }
    if (path == "/api/version" && method == "GET") {
      ex.Reply(Status::ok, Json{{"version", "0.12.6"}});
      return true;
    }
    if (path == "/api/tags" && method == "GET") {
      Json models = Json::array();
      for (const auto& model : kModels) {
        Json entry = Describe(model);
        entry["modified_at"] = "2026-01-15T10:00:00.000000000Z";
        models.push_back(std::move(entry));
      }
      ex.Reply(Status::ok, Json{{"models", models}});
      return true;
    }
    if (path == "/api/ps" && method == "GET") {
      ex.Reply(Status::ok, Json{{"models", Ps()}});
      return true;
    }
    if ((path == "/api/generate" || path == "/api/chat") && method == "POST") {
      Generate(ex, path == "/api/chat");
      return true;
    }
    return false;
  }

 private:
  static Json Describe(const Model& model) {
    return Json{{"name", model.name},
                {"model", model.name},
                {"size", model.size},
                {"digest", model.digest},
                {"details",
                 {{"parent_model", ""},
                  {"format", "gguf"},
                  {"family", model.family},
                  {"families", Json::array({model.family})},
                  {"parameter_size", model.parameter_size},
                  {"quantization_level", model.quantization}}}};
  }

  void DropExpiredLocked() {
    auto now = SysClock::now();
    for (auto it = loaded_.begin(); it != loaded_.end();) {
      if (it->second.expires && *it->second.expires <= now) {
        Log(fmt::format("{} ollama expired model={}", options_.name, it->first));
        it = loaded_.erase(it);
      } else {
        ++it;
      }
    }
  }

  Json Ps() {
    std::lock_guard lock(mutex_);
    DropExpiredLocked();
    Json models = Json::array();
    for (const auto& [name, entry] : loaded_) {
      Json item = Describe(*entry.model);
      int64_t vram =
          options_.vram_mb > 0 ? int64_t{options_.vram_mb} * 1024 * 1024 : entry.model->size;
      item["size_vram"] = vram;
      item["expires_at"] = entry.expires ? Rfc3339(*entry.expires) : ForeverRfc3339();
      item["context_length"] = 4096;
      models.push_back(std::move(item));
    }
    return models;
  }

  // Marks the model loaded (until further notice while a request uses it); true when it was not.
  bool Load(const Model& model) {
    std::lock_guard lock(mutex_);
    DropExpiredLocked();
    auto [it, inserted] = loaded_.try_emplace(model.name, Loaded{&model, std::nullopt});
    if (inserted) Log(fmt::format("{} ollama load model={}", options_.name, model.name));
    it->second.expires.reset();  // busy: not expiring while it serves this request
    return inserted;
  }

  // After a request: the model stays for keep_alive, or leaves now with keep_alive 0.
  void Release(const Model& model, const KeepAlive& keep_alive) {
    std::lock_guard lock(mutex_);
    if (keep_alive.Unloads()) {
      if (loaded_.erase(model.name) > 0) {
        Log(fmt::format("{} ollama unload model={}", options_.name, model.name));
      }
      return;
    }
    auto it = loaded_.find(model.name);
    if (it == loaded_.end()) return;
    if (keep_alive.duration) {
      it->second.expires =
          SysClock::now() + std::chrono::duration_cast<SysClock::duration>(*keep_alive.duration);
    } else {
      it->second.expires.reset();
    }
  }

  static std::string Fault(const std::string& text, const std::string& global) {
    if (text.find("FAKE_MIDSTREAM_ERROR") != std::string::npos) return "midstream_error";
    if (text.find("FAKE_DROP") != std::string::npos) return "drop";
    if (text.find("FAKE_MALFORMED") != std::string::npos) return "malformed";
    if (text.find("FAKE_500") != std::string::npos) return "http500";
    if (text.find("FAKE_TRUNCATE") != std::string::npos) return "truncate";
    return global;
  }

  void Generate(Exchange& ex, bool chat) {
    auto started = std::chrono::steady_clock::now();
    Json body = ex.BodyJson();
    if (body.is_discarded() || !body.is_object()) {
      ex.Reply(Status::bad_request, Json{{"error", "invalid character in request body"}});
      return;
    }
    auto model_it = body.find("model");
    if (model_it == body.end() || !model_it->is_string() || model_it->get<std::string>().empty()) {
      ex.Reply(Status::bad_request, Json{{"error", "model is required"}});
      return;
    }
    std::string requested = model_it->get<std::string>();
    KeepAlive keep_alive = ParseKeepAlive(body);
    if (!keep_alive.error.empty()) {
      ex.Reply(Status::bad_request, Json{{"error", keep_alive.error}});
      return;
    }
    bool stream =
        !body.contains("stream") || !body["stream"].is_boolean() || body["stream"].get<bool>();

    // The text the model reads (and where the magic words are looked for).
    std::string text;
    bool empty_request = false;
    if (chat) {
      auto messages = body.find("messages");
      if (messages != body.end() && !messages->is_null() && !messages->is_array()) {
        ex.Reply(Status::bad_request,
                 Json{{"error",
                       "json: cannot unmarshal into Go struct field ChatRequest.messages "
                       "of type []api.Message"}});
        return;
      }
      empty_request = messages == body.end() || messages->is_null() || messages->empty();
      if (!empty_request) {
        for (const auto& message : *messages) {
          if (message.is_object() && message.contains("content") &&
              message["content"].is_string()) {
            text += message["content"].get<std::string>() + "\n";
          }
        }
      }
    } else {
      std::string prompt = body.value("prompt", Json("")).is_string()
                               ? body.value("prompt", std::string())
                               : std::string();
      empty_request = prompt.empty();
      text = body.value("system", Json("")).is_string()
                 ? body.value("system", std::string()) + "\n" + prompt
                 : prompt;
    }

    const Model* model = FindModel(requested);
    if (!model) {
      ex.Reply(
          Status::not_found,
          Json{{"error", fmt::format("model '{}' not found, try pulling it first", requested)}});
      return;
    }
    std::string created = Rfc3339(SysClock::now());

    if (empty_request) {
      Json reply = {{"model", requested}, {"created_at", created}, {"done", true}};
      if (chat) {
        reply["message"] = {{"role", "assistant"}, {"content", ""}};
      } else {
        reply["response"] = "";
      }
      if (keep_alive.Unloads()) {
        Release(*model, keep_alive);
        reply["done_reason"] = "unload";
      } else {
        Load(*model);
        Release(*model, keep_alive);
        reply["done_reason"] = "load";
      }
      ex.Reply(Status::ok, reply);
      return;
    }

    std::string fault = Fault(text, options_.fault);
    if (fault == "http500") {
      ex.Reply(Status::internal_server_error,
               Json{{"error", "llama runner process has terminated: exit status 2 (FAKE_500)"}});
      return;
    }

    int tokens = kDefaultTokens;
    bool limited = false;
    if (auto options = body.find("options"); options != body.end() && options->is_object()) {
      if (auto n = options->find("num_predict");
          n != options->end() && n->is_number_integer() && n->get<int>() > 0) {
        tokens = n->get<int>();
        limited = true;
      }
    }

    bool fresh = Load(*model);
    auto load_duration = std::chrono::steady_clock::now() - started;
    if (fresh) load_duration += std::chrono::milliseconds(25);  // nominal: weights "loaded"
    int prompt_tokens = CountWords(text) + 1;

    auto line = [&](const std::string& delta) {
      Json out = {{"model", requested}, {"created_at", Rfc3339(SysClock::now())}};
      if (chat) {
        out["message"] = {{"role", "assistant"}, {"content", delta}};
      } else {
        out["response"] = delta;
      }
      out["done"] = false;
      return out;
    };

    if (stream && !ex.StartChunked(Status::ok, "application/x-ndjson")) {
      Release(*model, keep_alive);
      return;
    }
    auto eval_started = std::chrono::steady_clock::now();
    std::string full;
    int sent = 0;
    for (; sent < tokens; ++sent) {
      if (sent == kFaultAfterTokens && fault == "midstream_error") {
        Release(*model, keep_alive);
        const char* error =
            "an error was encountered while running the model: unexpected EOF "
            "(FAKE_MIDSTREAM_ERROR)";
        if (stream) {
          ex.Chunk(Json{{"error", error}}.dump() + "\n");
          ex.EndChunked();
        } else {
          ex.Reply(Status::internal_server_error, Json{{"error", error}});
        }
        return;
      }
      if (sent == kFaultAfterTokens && fault == "drop") {
        Release(*model, keep_alive);
        Log(fmt::format("{} ollama drop model={}", options_.name, model->name));
        ex.Drop();
        return;
      }
      if (sent == kFaultAfterTokens && fault == "truncate") {
        Release(*model, keep_alive);
        if (stream) {
          ex.EndChunked();
        } else {
          ex.Reply(Status::ok, std::string(), "application/json; charset=utf-8");
        }
        return;
      }
      if (sent == kFaultAfterTokens && fault == "malformed" && stream) {
        ex.Chunk("{\"model\": this is not json (FAKE_MALFORMED)\n");
      }
      // The sleep is the simulated work (one token), not a wait for a condition.
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.work_ms));
      std::string delta = (sent == 0 ? "" : " ") + kWords[sent % kWords.size()];
      full += delta;
      if (stream && !ex.Chunk(line(delta).dump() + "\n")) {
        Log(fmt::format("{} ollama client gone model={}", options_.name, model->name));
        Release(*model, keep_alive);
        return;
      }
    }
    auto eval_duration = std::chrono::steady_clock::now() - eval_started;
    Release(*model, keep_alive);
    Log(fmt::format("{} ollama {} model={} tokens={}", options_.name, chat ? "chat" : "generate",
                    model->name, sent));

    Json final_line = line(stream ? "" : full);
    final_line["done"] = true;
    final_line["done_reason"] = limited ? "length" : "stop";
    if (!chat) {
      Json context = Json::array();
      for (int i = 0; i < prompt_tokens + sent; ++i) context.push_back(128000 + i);
      final_line["context"] = context;
    }
    final_line["total_duration"] = Nanos(std::chrono::steady_clock::now() - started);
    final_line["load_duration"] = Nanos(load_duration);
    final_line["prompt_eval_count"] = prompt_tokens;
    final_line["prompt_eval_duration"] = int64_t{prompt_tokens} * 1'000'000;
    final_line["eval_count"] = sent;
    final_line["eval_duration"] = Nanos(eval_duration);
    if (!stream) {
      if (fault == "malformed") {
        ex.Reply(Status::ok, "{\"model\": this is not json (FAKE_MALFORMED)",
                 "application/json; charset=utf-8");
      } else {
        ex.Reply(Status::ok, final_line);
      }
      return;
    }
    ex.Chunk(final_line.dump() + "\n");
    ex.EndChunked();
  }

  const Options options_;
  std::mutex mutex_;
  std::map<std::string, Loaded> loaded_;  // by normalised name
};

}  // namespace

std::unique_ptr<Personality> MakeOllama(const Options& options) {
  return std::make_unique<Ollama>(options);
}

}  // namespace gpuq::fake
