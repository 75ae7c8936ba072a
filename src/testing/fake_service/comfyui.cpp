// The ComfyUI personality (docs/protocols.md section 1): a queue, one worker thread that
// "executes" API-format graphs node by node, the /ws event stream routed by client id, history,
// files (/view, /upload/image) and queue control. Every route is also served under /api.
//
// Routes: POST /prompt, GET /prompt, GET /ws?clientId=, GET /history[/{id}], POST /history,
// GET /view, POST /upload/image, POST /interrupt, POST /free, GET|POST /queue,
// GET /system_stats (vram figures from --vram-mb), GET /object_info (the known classes only).
//
// Execution: nodes run in dependency order. A node with an integer `steps` input sends `steps`
// progress events, one per --work-ms; any other node takes one --work-ms. SaveImage writes a
// 1x1 PNG per image (batch_size of the graph's latent node, default 1) into
// <data_dir>/output/<subfolder of filename_prefix>/<prefix>_00001_.png (the counter continues
// after existing files, as ComfyUI does); PreviewImage writes into <data_dir>/temp/. Known
// classes are listed in kClasses; any other class_type is a 400 missing_node_type.
// CheckpointLoaderSimple's ckpt_name must be one of kCheckpoints and LoadImage's image must exist
// in input/ (400 prompt_outputs_failed_validation with node_errors otherwise).
// Validation is all-or-nothing: any node error is a 400 (real servers may return 200 with a
// non-empty node_errors when some outputs are still valid).
// No node cache: execution_cached always lists no nodes.
//
// Faults, per prompt (any node input "fake_fault": MODE, or a node of class_type FakeFail, which
// is execution_error) or for every prompt (--fault MODE):
//   execution_error  the node fails: execution_error {node_id, node_type, exception_message, ...}
//   drop_ws          mid-way through the first node, every WebSocket is reset; the prompt still
//                    finishes (reconnecting works; /history has the result)
//   hang             the node never finishes until POST /interrupt
//   http500          POST /prompt answers 500 with aiohttp's plain-text body
//   malformed_ws     a non-JSON text frame is sent to the client before execution_start
// Every prompt's sampler node also gets one binary PREVIEW_IMAGE frame (type 1, PNG) after its
// first progress event, which clients must skip.
//
// --data-dir (default: a new /tmp/gpuq-fake-comfyui-XXXXXX) holds input/, output/ and temp/.
// Log lines: "<name> comfyui queued prompt=<id> client=<cid>", "... interrupt prompt=<id>
// running=<id>", "... ws open client=<cid>", "... ws closed client=<cid>", "... free ...".
#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "testing/fake_service/fake_server.hpp"

namespace gpuq::fake {

namespace {

namespace asio = boost::asio;
namespace websocket = beast::websocket;
namespace fs = std::filesystem;
using Status = bhttp::status;

const std::vector<std::string> kClasses = {"CheckpointLoaderSimple",
                                           "CLIPTextEncode",
                                           "EmptyLatentImage",
                                           "EmptySD3LatentImage",
                                           "KSampler",
                                           "KSamplerAdvanced",
                                           "VAEDecode",
                                           "VAEEncode",
                                           "VAELoader",
                                           "UNETLoader",
                                           "DualCLIPLoader",
                                           "CLIPLoader",
                                           "LoraLoader",
                                           "LoadImage",
                                           "SaveImage",
                                           "PreviewImage",
                                           "FluxGuidance",
                                           "ImageScale",
                                           "ModelSamplingFlux",
                                           "BasicGuider",
                                           "SamplerCustomAdvanced",
                                           "RandomNoise",
                                           "KSamplerSelect",
                                           "BasicScheduler",
                                           "CLIPVisionLoader",
                                           "CLIPVisionEncode",
                                           "WanImageToVideo",
                                           "EmptyHunyuanLatentVideo",
                                           "FakeFail"};
const std::vector<std::string> kCheckpoints = {
    "flux1-dev-fp8.safetensors", "sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"};
const std::set<std::string> kFaults = {"execution_error", "drop_ws", "hang", "http500",
                                       "malformed_ws"};

// A valid 1x1 RGBA PNG.
const unsigned char kPng[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
    0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewId() {
  static std::mutex mutex;
  static uint64_t counter = 0;
  std::lock_guard lock(mutex);
  uint64_t a = static_cast<uint64_t>(NowMs()) * 2654435761u + (++counter) * 0x9e3779b97f4a7c15ull;
  uint64_t b = a ^ (counter << 17) ^ 0x5851f42d4c957f2dull;
  auto hex = fmt::format("{:016x}{:016x}", a, b);
  hex[12] = '4';
  hex[16] = "89ab"[hex[16] % 4];
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                     hex.substr(16, 4), hex.substr(20, 12));
}

bool IsUuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

bool IsLink(const Json& value) {
  return value.is_array() && value.size() == 2 && value[0].is_string() &&
         value[1].is_number_integer();
}

// "10" sorts after "9", like ComfyUI's numeric node ids.
bool NodeIdLess(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() < b.size() : a < b;
}

// One WebSocket client. Its thread runs `io` (reads, and writes posted from other threads).
// Shared by its thread and the client registry.
class WsConn : public std::enable_shared_from_this<WsConn> {
 public:
  WsConn(int fd, std::string sid) : ws_(io_), sid_(std::move(sid)) {
    beast::error_code ec;
    ws_.next_layer().assign(tcp::v4(), fd, ec);
  }
  websocket::stream<tcp::socket>& ws() { return ws_; }
  asio::io_context& io() { return io_; }
  const std::string& sid() const { return sid_; }

  void Send(std::string data, bool binary = false) {
    if (dead_) return;
    asio::post(io_, [self = shared_from_this(), data = std::move(data), binary]() mutable {
      self->outbox_.push_back({std::move(data), binary});
      self->Pump();
    });
  }
  void Reset() {
    if (dead_) return;
    asio::post(io_, [self = shared_from_this()] {
      beast::error_code ec;
      self->ws_.next_layer().set_option(asio::socket_base::linger(true, 0), ec);
      self->ws_.next_layer().close(ec);
    });
  }
  // Reads until the client goes away (answering feature_flags), serving posted writes.
  void Run() {
    Read();
    io_.run();
    dead_ = true;
  }

 private:
  struct Out {
    std::string data;
    bool binary;
  };
  void Pump() {
    if (writing_ || outbox_.empty()) return;
    writing_ = true;
    ws_.binary(outbox_.front().binary);
    ws_.async_write(asio::buffer(outbox_.front().data),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->writing_ = false;
                      if (ec) {
                        self->outbox_.clear();
                        beast::error_code ignored;
                        self->ws_.next_layer().close(ignored);
                        return;
                      }
                      self->outbox_.pop_front();
                      self->Pump();
                    });
  }
  void Read() {
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        self->outbox_.clear();
        beast::error_code ignored;
        self->ws_.next_layer().close(ignored);
        return;
      }
      auto msg = Json::parse(beast::buffers_to_string(self->in_.data()), nullptr, false);
      self->in_.consume(self->in_.size());
      if (msg.is_object() && msg.value("type", "") == "feature_flags") {
        self->outbox_.push_back(
            {Json{{"type", "feature_flags"},
                  {"data", {{"supports_preview_metadata", false}, {"max_upload_size", 104857600}}}}
                 .dump(),
             false});
        self->Pump();
      }
      self->Read();
    });
  }

  asio::io_context io_;
  websocket::stream<tcp::socket> ws_;
  std::string sid_;
  beast::flat_buffer in_;
  std::deque<Out> outbox_;
  bool writing_ = false;
  std::atomic<bool> dead_{false};
};

struct Job {
  double number = 0;
  std::string id;
  Json graph;
  Json extra_data;
  std::string client_id;
  std::vector<std::string> outputs;  // output node ids
  std::string fault;                 // from the graph or --fault
};

// The queue number as the server prints it: an integer unless the client sent a fraction.
Json Number(const Job& job) {
  auto whole = static_cast<int64_t>(job.number);
  if (static_cast<double>(whole) == job.number) return whole;
  return job.number;
}

class ComfyUi : public Personality {
 public:
  explicit ComfyUi(const Options& options) : options_(options) {
    std::string dir = options.data_dir;
    if (dir.empty()) {
      char templ[] = "/tmp/gpuq-fake-comfyui-XXXXXX";
      if (::mkdtemp(templ) != nullptr) dir = templ;
    }
    data_dir_ = fs::absolute(dir);
    std::error_code ec;
    for (const char* sub : {"input", "output", "temp"}) fs::create_directories(data_dir_ / sub, ec);
    std::thread([this] { Worker(); }).detach();
  }

  bool Handle(Exchange& ex) override {
    std::string path(ex.Path());
    if (path.starts_with("/api/")) path = path.substr(4);
    std::string method = ex.Method();
    if (path == "/prompt" && method == "POST") return PostPrompt(ex);
    if (path == "/prompt" && method == "GET") {
      ex.Reply(Status::ok, Json{{"exec_info", {{"queue_remaining", QueueRemaining()}}}});
      return true;
    }
    if (path == "/ws" && method == "GET") return OpenWs(ex);
    if (path == "/history" || path.starts_with("/history/")) return History(ex, path);
    if (path == "/view" && method == "GET") return View(ex);
    if (path == "/upload/image" && method == "POST") return Upload(ex);
    if (path == "/interrupt" && method == "POST") return Interrupt(ex);
    if (path == "/free" && method == "POST") {
      Json body = ex.BodyJson();
      Log(fmt::format("{} comfyui free {}", options_.name, body.is_discarded() ? "" : body.dump()));
      ex.ReplyEmpty(Status::ok);
      return true;
    }
    if (path == "/queue") return Queue(ex, method);
    if (path == "/system_stats" && method == "GET") return SystemStats(ex);
    if (path == "/object_info" && method == "GET") {
      Json info = Json::object();
      for (const auto& c : kClasses) info[c] = {{"name", c}, {"display_name", c}};
      info["CheckpointLoaderSimple"]["input"] = {
          {"required", {{"ckpt_name", Json::array({kCheckpoints})}}}};
      ex.Reply(Status::ok, info);
      return true;
    }
    return false;
  }

 private:
  // ---- POST /prompt ----
  static Json PromptError(const std::string& type, const std::string& message,
                          const std::string& details, Json extra = Json::object(),
                          Json node_errors = Json::object()) {
    return Json{{"error",
                 {{"type", type},
                  {"message", message},
                  {"details", details},
                  {"extra_info", std::move(extra)}}},
                {"node_errors", std::move(node_errors)}};
  }

  static bool IsOutputNode(const std::string& class_type) {
    return class_type == "SaveImage" || class_type == "PreviewImage" || class_type == "FakeFail";
  }

  // Node errors of one node (an empty array when it is fine).
  Json NodeInputErrors(const Json& graph, const Json& node) const {
    Json errors = Json::array();
    const Json& inputs =
        node.contains("inputs") && node["inputs"].is_object() ? node["inputs"] : Json::object();
    for (const auto& [name, value] : inputs.items()) {
      if (value.is_array() && !value.empty() && value[0].is_string() && !IsLink(value)) {
        errors.push_back({{"type", "bad_linked_input"},
                          {"message", "Bad linked input, must be a length-2 list of [string, int]"},
                          {"details", name},
                          {"extra_info", {{"input_name", name}, {"received_value", value}}}});
      } else if (IsLink(value) && !graph.contains(value[0].get<std::string>())) {
        errors.push_back({{"type", "bad_linked_input"},
                          {"message", "Bad linked input"},
                          {"details", fmt::format("{}: node {} does not exist", name,
                                                  value[0].get<std::string>())},
                          {"extra_info", {{"input_name", name}, {"received_value", value}}}});
      }
    }
    std::string class_type = node["class_type"];
    if (class_type == "CheckpointLoaderSimple") {
      auto it = inputs.find("ckpt_name");
      if (it == inputs.end()) {
        errors.push_back({{"type", "required_input_missing"},
                          {"message", "Required input is missing"},
                          {"details", "ckpt_name"},
                          {"extra_info", {{"input_name", "ckpt_name"}}}});
      } else if (!IsLink(*it) &&
                 (!it->is_string() || std::find(kCheckpoints.begin(), kCheckpoints.end(),
                                                it->get<std::string>()) == kCheckpoints.end())) {
        std::string shown = it->is_string() ? it->get<std::string>() : it->dump();
        errors.push_back({{"type", "value_not_in_list"},
                          {"message", "Value not in list"},
                          {"details", fmt::format("ckpt_name: '{}' not in {}", shown,
                                                  Json(kCheckpoints).dump())},
                          {"extra_info",
                           {{"input_name", "ckpt_name"},
                            {"input_config", Json::array({kCheckpoints})},
                            {"received_value", *it}}}});
      }
    }
    if (class_type == "LoadImage") {
      auto it = inputs.find("image");
      std::string image = it != inputs.end() && it->is_string() ? it->get<std::string>() : "";
      std::error_code ec;
      if (image.empty() || image.find("..") != std::string::npos || image.front() == '/' ||
          !fs::is_regular_file(data_dir_ / "input" / image, ec)) {
        errors.push_back({{"type", "custom_validation_failed"},
                          {"message", "Custom validation failed for node"},
                          {"details", fmt::format("image - Invalid image file: {}", image)},
                          {"extra_info", {{"input_name", "image"}}}});
      }
    }
    return errors;
  }

  bool PostPrompt(Exchange& ex) {
    Json body = ex.BodyJson();
    if (body.is_discarded() || !body.is_object() || !body.contains("prompt")) {
      ex.Reply(Status::bad_request,
               PromptError("no_prompt", "No prompt provided", "No prompt provided"));
      return true;
    }
    const Json& graph = body["prompt"];
    if (!graph.is_object()) {
      ex.Reply(Status::bad_request,
               PromptError("invalid_prompt", "Invalid prompt", "The prompt must be an object"));
      return true;
    }
    std::string fault = options_.fault;
    Json node_errors = Json::object();
    std::vector<std::string> outputs;
    for (const auto& [id, node] : graph.items()) {
      if (!node.is_object() || !node.contains("class_type") || !node["class_type"].is_string()) {
        ex.Reply(Status::bad_request,
                 PromptError("invalid_prompt",
                             "Cannot execute because a node is missing the class_type property.",
                             fmt::format("Node ID '#{}'", id)));
        return true;
      }
      std::string class_type = node["class_type"];
      if (std::find(kClasses.begin(), kClasses.end(), class_type) == kClasses.end()) {
        std::string title = class_type;
        if (node.contains("_meta") && node["_meta"].is_object()) {
          title = node["_meta"].value("title", class_type);
        }
        ex.Reply(
            Status::bad_request,
            PromptError(
                "missing_node_type",
                fmt::format("Node '{}' not found. The custom node may not be installed.", title),
                fmt::format("Node ID '#{}'", id),
                {{"node_id", id}, {"class_type", class_type}, {"node_title", title}}));
        return true;
      }
      if (node.contains("inputs") && node["inputs"].is_object()) {
        if (auto it = node["inputs"].find("fake_fault"); it != node["inputs"].end() &&
                                                         it->is_string() &&
                                                         kFaults.contains(it->get<std::string>())) {
          fault = it->get<std::string>();
        }
      }
      Json errors = NodeInputErrors(graph, node);
      if (!errors.empty()) {
        node_errors[id] = {
            {"errors", errors}, {"dependent_outputs", Json::array()}, {"class_type", class_type}};
      }
      if (IsOutputNode(class_type)) outputs.push_back(id);
    }
    if (fault == "http500") {
      ex.Reply(Status::internal_server_error,
               "500 Internal Server Error\n\nServer got itself in trouble", "text/plain");
      return true;
    }
    if (outputs.empty()) {
      ex.Reply(Status::bad_request, PromptError("prompt_no_outputs", "Prompt has no outputs", ""));
      return true;
    }
    if (!node_errors.empty()) {
      std::vector<std::string> lines;
      for (auto& [id, entry] : node_errors.items()) {
        entry["dependent_outputs"] = outputs;
        for (const auto& e : entry["errors"]) {
          lines.push_back(fmt::format("{}: {}", e["message"].get<std::string>(),
                                      e["details"].get<std::string>()));
        }
      }
      std::string details;
      for (const auto& l : lines) details += (details.empty() ? "" : "\n") + l;
      ex.Reply(Status::bad_request,
               PromptError("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                           details, Json::object(), node_errors));
      return true;
    }
    Job job;
    job.graph = graph;
    job.outputs = outputs;
    job.fault = fault;
    job.extra_data = body.value("extra_data", Json::object());
    if (auto it = body.find("client_id"); it != body.end() && it->is_string()) {
      job.client_id = it->get<std::string>();
    }
    if (auto it = body.find("prompt_id"); it != body.end() && !it->is_null()) {
      if (!it->is_string() || !IsUuid(it->get<std::string>())) {
        ex.Reply(Status::bad_request,
                 PromptError("invalid_prompt_id", "Invalid prompt_id",
                             fmt::format("prompt_id must be a UUID: {}", it->dump())));
        return true;
      }
      job.id = it->get<std::string>();
    } else {
      job.id = NewId();
    }
    {
      std::lock_guard lock(mutex_);
      int number = next_number_++;
      job.number = number;
      if (body.contains("number") && body["number"].is_number()) {
        job.number = body["number"].get<double>();
      }
      if (body.value("front", false)) job.number = -number;
      pending_.push_back(job);
    }
    Log(fmt::format("{} comfyui queued prompt={} client={} fault={}", options_.name, job.id,
                    job.client_id, job.fault));
    cv_.notify_all();
    BroadcastStatus();
    ex.Reply(Status::ok,
             Json{{"prompt_id", job.id}, {"number", Number(job)}, {"node_errors", Json::object()}});
    return true;
  }

  // ---- WebSocket ----
  bool OpenWs(Exchange& ex) {
    std::string sid = ex.Query("clientId").value_or("");
    if (sid.empty()) sid = NewId();
    beast::error_code ec;
    int fd = ex.socket.release(ec);
    ex.done = true;
    if (ec) return true;
    auto conn = std::make_shared<WsConn>(fd, sid);
    conn->ws().accept(ex.request, ec);
    ex.status_sent = ec ? 400 : 101;
    if (ec) return true;
    std::string running_node, running_prompt;
    {
      std::lock_guard lock(mutex_);
      clients_[sid] = conn;  // a reconnect with the same id replaces the old socket
      if (running_ && running_->client_id == sid) {
        running_node = running_node_;
        running_prompt = running_->id;
      }
    }
    Log(fmt::format("{} comfyui ws open client={}", options_.name, sid));
    conn->Send(Event(
        "status",
        {{"status", {{"exec_info", {{"queue_remaining", QueueRemaining()}}}}}, {"sid", sid}}));
    if (!running_node.empty()) {
      conn->Send(Event(
          "executing",
          {{"node", running_node}, {"display_node", running_node}, {"prompt_id", running_prompt}}));
    }
    conn->Run();
    {
      std::lock_guard lock(mutex_);
      if (auto it = clients_.find(sid); it != clients_.end() && it->second == conn) {
        clients_.erase(it);
      }
    }
    Log(fmt::format("{} comfyui ws closed client={}", options_.name, sid));
    return true;
  }

  static std::string Event(const std::string& type, Json data) {
    return Json{{"type", type}, {"data", std::move(data)}}.dump();
  }

  // To one client id, or to every socket when `to` is "*". No client id: nobody.
  void Emit(const std::string& to, const std::string& type, Json data) {
    if (to.empty()) return;
    std::string text = Event(type, std::move(data));
    std::lock_guard lock(mutex_);
    for (auto& [sid, conn] : clients_) {
      if (to == "*" || sid == to) conn->Send(text);
    }
  }
  void EmitRaw(const std::string& to, std::string data, bool binary) {
    if (to.empty()) return;
    std::lock_guard lock(mutex_);
    for (auto& [sid, conn] : clients_) {
      if (to == "*" || sid == to) conn->Send(data, binary);
    }
  }

  int QueueRemaining() {
    std::lock_guard lock(mutex_);
    return static_cast<int>(pending_.size()) + (running_ ? 1 : 0);
  }
  void BroadcastStatus() {
    Emit("*", "status", {{"status", {{"exec_info", {{"queue_remaining", QueueRemaining()}}}}}});
  }

  // ---- the worker ----
  void Worker() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return !pending_.empty(); });
        auto it = std::min_element(pending_.begin(), pending_.end(),
                                   [](const Job& a, const Job& b) { return a.number < b.number; });
        job = *it;
        pending_.erase(it);
        running_ = job;
        interrupted_ = false;
        running_node_.clear();
      }
      Execute(job);
      {
        std::lock_guard lock(mutex_);
        running_.reset();
        running_node_.clear();
      }
      BroadcastStatus();
    }
  }

  // Waits one unit of work; false when interrupted.
  bool Pace(int ms) {
    std::unique_lock lock(mutex_);
    return !cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return interrupted_; });
  }

  std::vector<std::string> Order(const Json& graph) {
    std::vector<std::string> ids;
    for (const auto& [id, node] : graph.items()) ids.push_back(id);
    std::sort(ids.begin(), ids.end(), NodeIdLess);
    std::vector<std::string> order;
    std::set<std::string> done;
    while (order.size() < ids.size()) {
      bool progressed = false;
      for (const auto& id : ids) {
        if (done.contains(id)) continue;
        bool ready = true;
        const Json inputs = graph[id].value("inputs", Json::object());
        for (const auto& [name, value] : inputs.items()) {
          if (IsLink(value) && !done.contains(value[0].get<std::string>())) ready = false;
        }
        if (ready) {
          order.push_back(id);
          done.insert(id);
          progressed = true;
        }
      }
      if (!progressed) break;  // a cycle: the rest never runs
    }
    return order;
  }

  // Writes the images of a SaveImage/PreviewImage node; an error message when it cannot.
  std::string SaveImages(const Job& job, const Json& node, bool temp, Json& images) {
    std::string prefix = temp ? "ComfyUI_temp" : "ComfyUI";
    const Json inputs = node.value("inputs", Json::object());
    if (auto it = inputs.find("filename_prefix"); it != inputs.end() && it->is_string()) {
      prefix = it->get<std::string>();
    }
    int batch = 1;
    for (const auto& [id, other] : job.graph.items()) {
      const Json in = other.value("inputs", Json::object());
      if (auto b = in.find("batch_size"); b != in.end() && b->is_number_integer()) {
        batch = std::clamp(b->get<int>(), 1, 8);
      }
    }
    fs::path base = data_dir_ / (temp ? "temp" : "output");
    fs::path full = (base / prefix).lexically_normal();
    auto rel = full.lexically_relative(base);
    if (prefix.empty() || prefix.front() == '/' || rel.empty() || *rel.begin() == "..") {
      return fmt::format(
          "**** ERROR: Saving image outside the output folder is not allowed.\n "
          "full_output_folder: {}\n output_dir: {}",
          full.parent_path().string(), base.string());
    }
    std::string subfolder = rel.parent_path().string();
    std::string name = rel.filename().string();
    fs::path folder = base / subfolder;
    std::error_code ec;
    fs::create_directories(folder, ec);
    int counter = 1;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      std::string f = entry.path().filename().string();
      // <name>_NNNNN_.png
      if (f.size() == name.size() + 11 && f.starts_with(name + "_") && f.ends_with("_.png")) {
        int n = std::atoi(f.substr(name.size() + 1, 5).c_str());
        counter = std::max(counter, n + 1);
      }
    }
    for (int i = 0; i < batch; ++i, ++counter) {
      std::string file = fmt::format("{}_{:05}_.png", name, counter);
      std::ofstream out(folder / file, std::ios::binary);
      out.write(reinterpret_cast<const char*>(kPng), sizeof(kPng));
      if (!out) return fmt::format("cannot write {}", (folder / file).string());
      images.push_back(
          {{"filename", file}, {"subfolder", subfolder}, {"type", temp ? "temp" : "output"}});
    }
    return "";
  }

  void Execute(const Job& job) {
    const std::string& to = job.client_id;
    Json messages = Json::array();
    auto record = [&](const std::string& type, Json data, bool broadcast = false) {
      messages.push_back(Json::array({type, data}));
      Emit(broadcast ? "*" : to, type, std::move(data));
    };
    if (job.fault == "malformed_ws") EmitRaw(to, "this is not JSON {", false);
    record("execution_start", {{"prompt_id", job.id}, {"timestamp", NowMs()}});
    record("execution_cached",
           {{"nodes", Json::array()}, {"prompt_id", job.id}, {"timestamp", NowMs()}});
    Json outputs = Json::object();
    Json meta = Json::object();
    Json executed = Json::array();
    bool failed = false;
    bool dropped = false;
    for (const auto& id : Order(job.graph)) {
      const Json& node = job.graph[id];
      std::string class_type = node["class_type"];
      {
        std::lock_guard lock(mutex_);
        running_node_ = id;
      }
      Emit(to, "executing", {{"node", id}, {"display_node", id}, {"prompt_id", job.id}});
      const Json inputs = node.value("inputs", Json::object());
      bool node_fault = class_type == "FakeFail" ||
                        (inputs.contains("fake_fault") && inputs["fake_fault"].is_string());
      std::string fault = node_fault
                              ? (class_type == "FakeFail" ? std::string("execution_error")
                                                          : inputs["fake_fault"].get<std::string>())
                              : "";
      // A --fault applies at the first node.
      if (fault.empty() && executed.empty() && !options_.fault.empty()) fault = options_.fault;
      int steps = 1;
      bool progress = false;
      if (auto it = inputs.find("steps"); it != inputs.end() && it->is_number_integer()) {
        steps = std::clamp(it->get<int>(), 1, 1000);
        progress = true;
      }
      bool interrupted = false;
      if (fault == "hang") {
        while (Pace(1000)) {
        }
        interrupted = true;
      }
      for (int step = 1; step <= steps && !interrupted; ++step) {
        if (!Pace(options_.work_ms)) {
          interrupted = true;
          break;
        }
        if (progress) {
          Emit(to.empty() ? "*" : to, "progress",
               {{"value", step}, {"max", steps}, {"prompt_id", job.id}, {"node", id}});
          if (step == 1) {
            std::string frame = {0, 0, 0, 1, 0, 0, 0, 2};
            frame.append(reinterpret_cast<const char*>(kPng), sizeof(kPng));
            EmitRaw(to, frame, true);
          }
        }
        if (fault == "drop_ws" && !dropped && (step * 2 >= steps)) {
          dropped = true;
          Log(fmt::format("{} comfyui dropping every websocket prompt={}", options_.name, job.id));
          std::lock_guard lock(mutex_);
          for (auto& [sid, conn] : clients_) conn->Reset();
        }
      }
      if (interrupted) {
        record("execution_interrupted",
               {{"prompt_id", job.id},
                {"node_id", id},
                {"node_type", class_type},
                {"executed", executed},
                {"timestamp", NowMs()}},
               /*broadcast=*/true);
        failed = true;
        break;
      }
      std::string error;
      if (fault == "execution_error") {
        error = class_type == "FakeFail"
                    ? "FakeFail failed as asked"
                    : fmt::format("{} failed as asked (fake_fault)", class_type);
      }
      Json images = Json::array();
      if (error.empty() && (class_type == "SaveImage" || class_type == "PreviewImage")) {
        error = SaveImages(job, node, class_type == "PreviewImage", images);
      }
      if (!error.empty()) {
        Json current_inputs = Json::object();
        for (const auto& [name, value] : inputs.items()) {
          current_inputs[name] = Json::array({value});
        }
        record("execution_error",
               {{"prompt_id", job.id},
                {"node_id", id},
                {"node_type", class_type},
                {"executed", executed},
                {"exception_message", error},
                {"exception_type", "RuntimeError"},
                {"traceback", Json::array({"  File \"execution.py\", line 1\n"})},
                {"current_inputs", current_inputs},
                {"current_outputs", Json::array()},
                {"timestamp", NowMs()}});
        failed = true;
        break;
      }
      executed.push_back(id);
      meta[id] = {
          {"node_id", id}, {"display_node", id}, {"parent_node", nullptr}, {"real_node_id", id}};
      if (!images.empty()) {
        Json output = {{"images", images}};
        outputs[id] = output;
        Emit(to, "executed",
             {{"node", id}, {"display_node", id}, {"output", output}, {"prompt_id", job.id}});
      }
    }
    if (!failed) record("execution_success", {{"prompt_id", job.id}, {"timestamp", NowMs()}});
    {
      // As main.py: the history is written after execute() returned, then executing node:null.
      std::lock_guard lock(mutex_);
      history_order_.push_back(job.id);
      history_[job.id] = {
          {"prompt", Json::array({Number(job), job.id, job.graph, job.extra_data, job.outputs})},
          {"outputs", outputs},
          {"status",
           {{"status_str", failed ? "error" : "success"},
            {"completed", !failed},
            {"messages", messages}}},
          {"meta", meta}};
      running_node_.clear();
    }
    Emit(to, "executing", {{"node", nullptr}, {"prompt_id", job.id}});
  }

  // ---- history, queue, interrupt ----
  bool History(Exchange& ex, const std::string& path) {
    if (ex.Method() == "POST" && path == "/history") {
      Json body = ex.BodyJson();
      std::lock_guard lock(mutex_);
      if (body.is_object() && body.value("clear", false)) {
        history_.clear();
        history_order_.clear();
      }
      if (body.is_object() && body.contains("delete") && body["delete"].is_array()) {
        for (const auto& id : body["delete"]) {
          if (!id.is_string()) continue;
          history_.erase(id.get<std::string>());
          std::erase(history_order_, id.get<std::string>());
        }
      }
      ex.ReplyEmpty(Status::ok);
      return true;
    }
    if (ex.Method() != "GET") return false;
    Json reply = Json::object();
    std::lock_guard lock(mutex_);
    if (path == "/history") {
      size_t max_items = history_order_.size();
      if (auto m = ex.Query("max_items")) max_items = std::strtoul(m->c_str(), nullptr, 10);
      size_t start = history_order_.size() > max_items ? history_order_.size() - max_items : 0;
      for (size_t i = start; i < history_order_.size(); ++i) {
        reply[history_order_[i]] = history_[history_order_[i]];
      }
    } else {
      std::string id = path.substr(std::string("/history/").size());
      if (auto it = history_.find(id); it != history_.end()) reply[id] = it->second;
    }
    ex.Reply(Status::ok, reply);
    return true;
  }

  bool Interrupt(Exchange& ex) {
    Json body = ex.BodyJson();
    std::string wanted;
    if (body.is_object() && body.contains("prompt_id") && body["prompt_id"].is_string()) {
      wanted = body["prompt_id"];
    }
    std::string running;
    {
      std::lock_guard lock(mutex_);
      if (running_) running = running_->id;
      if (running_ && (wanted.empty() || wanted == running)) interrupted_ = true;
    }
    cv_.notify_all();
    Log(fmt::format("{} comfyui interrupt prompt={} running={}", options_.name,
                    wanted.empty() ? "(any)" : wanted, running.empty() ? "(none)" : running));
    ex.ReplyEmpty(Status::ok);
    return true;
  }

  static Json QueueItem(const Job& job) {
    return Json::array({Number(job), job.id, job.graph, job.extra_data, job.outputs});
  }

  bool Queue(Exchange& ex, const std::string& method) {
    if (method == "GET") {
      Json running = Json::array();
      Json pending = Json::array();
      std::lock_guard lock(mutex_);
      if (running_) running.push_back(QueueItem(*running_));
      for (const auto& job : pending_) pending.push_back(QueueItem(job));
      ex.Reply(Status::ok, Json{{"queue_running", running}, {"queue_pending", pending}});
      return true;
    }
    if (method != "POST") return false;
    Json body = ex.BodyJson();
    {
      std::lock_guard lock(mutex_);
      if (body.is_object() && body.value("clear", false)) pending_.clear();
      if (body.is_object() && body.contains("delete") && body["delete"].is_array()) {
        for (const auto& id : body["delete"]) {
          std::erase_if(pending_, [&](const Job& j) { return id.is_string() && j.id == id; });
        }
      }
    }
    BroadcastStatus();
    ex.ReplyEmpty(Status::ok);
    return true;
  }

  bool SystemStats(Exchange& ex) {
    int64_t total = static_cast<int64_t>(options_.vram_mb) * 1024 * 1024;
    bool busy = QueueRemaining() > 0;
    int64_t free = busy ? total / 4 : total - total / 10;
    Json device = {{"name", "cuda:0 Fake GPU : cudaMallocAsync"},
                   {"type", "cuda"},
                   {"index", 0},
                   {"vram_total", total},
                   {"vram_free", free},
                   {"torch_vram_total", total / 2},
                   {"torch_vram_free", free / 2}};
    ex.Reply(Status::ok, Json{{"system",
                               {{"os", "posix"},
                                {"ram_total", int64_t{64} << 30},
                                {"ram_free", int64_t{32} << 30},
                                {"comfyui_version", "0.3.40-fake"},
                                {"python_version", "3.12.0"},
                                {"pytorch_version", "2.7.0+cu128"},
                                {"embedded_python", false},
                                {"argv", Json::array({"main.py"})}}},
                              {"devices", Json::array({device})}});
    return true;
  }

  // ---- files ----
  std::optional<fs::path> TypeDir(const std::string& type) const {
    if (type == "output" || type == "input" || type == "temp") return data_dir_ / type;
    return std::nullopt;
  }

  static bool Escapes(const fs::path& base, const fs::path& path) {
    auto rel = path.lexically_normal().lexically_relative(base);
    return rel.empty() || *rel.begin() == "..";
  }

  bool View(Exchange& ex) {
    std::string filename = ex.Query("filename").value_or("");
    std::string subfolder = ex.Query("subfolder").value_or("");
    auto base = TypeDir(ex.Query("type").value_or("output"));
    if (filename.empty() || !base) {
      ex.ReplyEmpty(Status::bad_request);
      return true;
    }
    if (filename.front() == '/' || filename.find("..") != std::string::npos) {
      ex.ReplyEmpty(Status::bad_request);
      return true;
    }
    fs::path folder = *base / subfolder;
    if (!subfolder.empty() && (subfolder.front() == '/' || Escapes(*base, folder))) {
      ex.ReplyEmpty(Status::forbidden);
      return true;
    }
    std::ifstream in(folder / filename, std::ios::binary);
    std::error_code ec;
    if (!in || !fs::is_regular_file(folder / filename, ec)) {
      ex.ReplyEmpty(Status::not_found);
      return true;
    }
    std::stringstream data;
    data << in.rdbuf();
    std::string type = filename.ends_with(".png")    ? "image/png"
                       : filename.ends_with(".webp") ? "image/webp"
                       : filename.ends_with(".jpg")  ? "image/jpeg"
                                                     : "application/octet-stream";
    ex.Reply(Status::ok, data.str(), type);
    return true;
  }

  struct Part {
    std::string name, filename, data;
  };

  static std::vector<Part> ParseMultipart(const std::string& content_type,
                                          const std::string& body) {
    std::vector<Part> parts;
    auto b = content_type.find("boundary=");
    if (b == std::string::npos) return parts;
    std::string boundary = content_type.substr(b + 9);
    if (auto semi = boundary.find(';'); semi != std::string::npos) boundary.resize(semi);
    if (boundary.size() >= 2 && boundary.front() == '"')
      boundary = boundary.substr(1, boundary.size() - 2);
    std::string delim = "--" + boundary;
    size_t pos = body.find(delim);
    while (pos != std::string::npos) {
      pos += delim.size();
      if (body.compare(pos, 2, "--") == 0) break;
      if (body.compare(pos, 2, "\r\n") == 0) pos += 2;
      size_t headers_end = body.find("\r\n\r\n", pos);
      if (headers_end == std::string::npos) break;
      std::string headers = body.substr(pos, headers_end - pos);
      size_t next = body.find("\r\n" + delim, headers_end + 4);
      if (next == std::string::npos) break;
      Part part;
      part.data = body.substr(headers_end + 4, next - headers_end - 4);
      auto attr = [&](const std::string& key) -> std::string {
        auto k = headers.find(key + "=\"");
        if (k == std::string::npos) return "";
        auto start = k + key.size() + 2;
        auto end = headers.find('"', start);
        return end == std::string::npos ? "" : headers.substr(start, end - start);
      };
      part.name = attr(" name");
      part.filename = attr("filename");
      parts.push_back(std::move(part));
      pos = next + 2;
    }
    return parts;
  }

  bool Upload(Exchange& ex) {
    auto parts =
        ParseMultipart(std::string(ex.request[bhttp::field::content_type]), ex.request.body());
    const Part* image = nullptr;
    std::string type = "input", subfolder;
    bool overwrite = false;
    for (const auto& p : parts) {
      if (p.name == "image") image = &p;
      if (p.name == "type") type = p.data;
      if (p.name == "subfolder") subfolder = p.data;
      if (p.name == "overwrite") overwrite = p.data == "true" || p.data == "1";
    }
    auto base = TypeDir(type);
    if (!image || image->filename.empty() || !base) {
      ex.ReplyEmpty(Status::bad_request);
      return true;
    }
    std::string filename = fs::path(image->filename).filename().string();
    fs::path folder = *base / subfolder;
    if (filename.empty() || filename == ".." || (!subfolder.empty() && Escapes(*base, folder))) {
      ex.ReplyEmpty(Status::bad_request);
      return true;
    }
    std::error_code ec;
    fs::create_directories(folder, ec);
    fs::path stem = fs::path(filename).stem();
    std::string ext = fs::path(filename).extension().string();
    bool duplicate = false;
    for (int i = 1; !overwrite && fs::exists(folder / filename, ec); ++i) {
      std::ifstream in(folder / filename, std::ios::binary);
      std::stringstream existing;
      existing << in.rdbuf();
      if (existing.str() == image->data) {
        duplicate = true;
        break;
      }
      filename = fmt::format("{} ({}){}", stem.string(), i, ext);
    }
    if (!duplicate) {
      std::ofstream out(folder / filename, std::ios::binary | std::ios::trunc);
      out.write(image->data.data(), static_cast<std::streamsize>(image->data.size()));
    }
    Log(fmt::format("{} comfyui uploaded {} subfolder={} type={}", options_.name, filename,
                    subfolder, type));
    ex.Reply(Status::ok, Json{{"name", filename}, {"subfolder", subfolder}, {"type", type}});
    return true;
  }

  const Options& options_;
  fs::path data_dir_;
  std::mutex mutex_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Job> pending_;
  std::optional<Job> running_;
  std::string running_node_;
  bool interrupted_ = false;
  int next_number_ = 0;
  std::map<std::string, Json> history_;
  std::vector<std::string> history_order_;
  std::map<std::string, std::shared_ptr<WsConn>> clients_;
};

}  // namespace

std::unique_ptr<Personality> MakeComfyUi(const Options& options) {
  return std::make_unique<ComfyUi>(options);
}

}  // namespace gpuq::fake
