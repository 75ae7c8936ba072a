// The AUTOMATIC1111 stable-diffusion-webui personality (`--personality a1111`): the `--api`
// routes of protocols.md section 2, as v1.10 answers them.
//
// Routes:
// - POST /sdapi/v1/txt2img, /sdapi/v1/img2img: blocks until the job is done. One job at a time
//   behind a global lock (the real `queue_lock`, which UI jobs share). Each job is n_iter
//   iterations of `steps` sampling steps; one step takes --work-ms. -> 200 {"images": [base64
//   PNG...], "parameters": <the request with defaults>, "info": "<JSON string>"}. The images are
//   real PNGs of width x height in one colour (derived from the seed); when more than one image
//   is made, images[0] is the grid and info's index_of_first_image is 1. `force_task_id` is
//   honoured (else "task(<random>)"). img2img without `init_images` -> 404 "Init image not found"
//   (api.py); an init image that is not base64 of a PNG/JPEG/WebP -> 500 "Invalid encoded image".
//   An unknown `sampler_name` (or `sampler_index`) -> 400 "Sampler not found". A body that is not
//   a JSON object, or a field of the wrong type -> FastAPI's 422 {"detail": [{loc, msg, type}]}.
//   Errors from the job have the webui's shape {"error", "detail", "body", "errors"}.
// - GET /sdapi/v1/progress: the global progress (not per job): progress, eta_relative, state
//   {skipped, interrupted, stopping_generation, job, job_count, job_timestamp, job_no,
//   sampling_step, sampling_steps}, current_image (null), textinfo, current_task (the running
//   job's task id, null when idle).
// - POST /sdapi/v1/interrupt -> {}: the running job stops within a moment and its blocked POST
//   returns 200 with the images finished so far (none when stopped in the first iteration).
//   Logs "a1111 interrupt task=<current task>".
// - POST /sdapi/v1/skip -> {}. POST /sdapi/v1/unload-checkpoint, /reload-checkpoint -> {} (logged;
//   a job after an unload reloads first). GET /sdapi/v1/sd-models, /samplers, /memory,
//   GET|POST /sdapi/v1/options (an unknown sd_model_checkpoint -> 500 "model '...' not found").
// - GET /internal/ping -> {}.
//
// Faults, by a magic word in a job's `prompt` (one process serves many test cases) or for every
// job by --fault MODE:
// - FAKE_FAIL_500 / --fault fail: after the first step, 500 {"error": "OutOfMemoryError",
//   "detail": "", "body": "", "errors": "CUDA out of memory. Tried to allocate 2.00 GiB (fake)"}.
// - FAKE_DROP / --fault drop: after the first step, the connection is reset with no reply.
// - FAKE_MALFORMED / --fault malformed: the job runs, then 200 with an HTML body, not JSON.
// - --fault noapi: every /sdapi/v1 route is 404 {"detail": "Not Found"}, as without --api.
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <random>
#include <set>

#include "testing/fake_service/fake_server.hpp"

namespace gpuq::fake {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kModelTitle = "v1-5-pruned-emaonly.safetensors [6ce0161689]";
constexpr std::string_view kModelName = "v1-5-pruned-emaonly";
constexpr std::string_view kModelHash = "6ce0161689";
constexpr std::string_view kVersion = "v1.10.1";
constexpr int kMaxSide = 4096;

const std::set<std::string, std::less<>> kSamplers = {
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
    "DPM++ 2M SDE", "DPM++ 3M SDE", "DPM fast", "DPM adaptive", "Restart", "DDIM", "PLMS", "UniPC",
    "LCM", "DPM++ 2M Karras", "DPM++ SDE Karras"};

// ---- base64 and PNG, written out here: the fake links nothing of gpuq's core.

constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out += kBase64[(n >> 18) & 63];
    out += kBase64[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kBase64[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kBase64[n & 63] : '=';
  }
  return out;
}

// Like the webui's decode_base64_to_image: an optional data: prefix, then base64. nullopt when
// it does not decode.
std::optional<std::string> Unbase64(std::string_view text) {
  if (text.starts_with("data:")) {
    auto comma = text.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    text.remove_prefix(comma + 1);
  }
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    auto pos = kBase64.find(c);
    if (pos == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool LooksLikeImage(std::string_view bytes) {
  return bytes.starts_with("\x89PNG\r\n\x1a\n") || bytes.starts_with("\xff\xd8\xff") ||
         (bytes.size() >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP");
}

uint32_t Crc32(std::string_view data) {
  static const auto kTable = [] {
    std::array<uint32_t, 256> table{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[n] = c;
    }
    return table;
  }();
  uint32_t c = 0xffffffffu;
  for (char ch : data) c = kTable[(c ^ static_cast<unsigned char>(ch)) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

void PutBig32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

void PutChunk(std::string& png, std::string_view type, std::string_view data) {
  PutBig32(png, static_cast<uint32_t>(data.size()));
  std::string body(type);
  body += data;
  png += body;
  PutBig32(png, Crc32(body));
}

// A valid PNG of width x height in one RGB colour: the pixel rows go into a zlib stream of
// stored (uncompressed) deflate blocks, so no compressor is needed.
std::string SolidPng(int width, int height, uint32_t rgb) {
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (1 + 3 * static_cast<size_t>(width)));
  std::string row(1, '\0');  // filter type 0
  for (int x = 0; x < width; ++x) {
    row += static_cast<char>((rgb >> 16) & 0xff);
    row += static_cast<char>((rgb >> 8) & 0xff);
    row += static_cast<char>(rgb & 0xff);
  }
  for (int y = 0; y < height; ++y) raw += row;

  std::string zlib = "\x78\x01";
  size_t offset = 0;
  do {
    size_t len = std::min<size_t>(65535, raw.size() - offset);
    bool last = offset + len == raw.size();
    zlib += static_cast<char>(last ? 1 : 0);
    zlib += static_cast<char>(len & 0xff);
    zlib += static_cast<char>((len >> 8) & 0xff);
    zlib += static_cast<char>(~len & 0xff);
    zlib += static_cast<char>((~len >> 8) & 0xff);
    zlib.append(raw, offset, len);
    offset += len;
  } while (offset < raw.size());
  uint32_t a = 1, b = 0;
  for (char c : raw) {
    a = (a + static_cast<unsigned char>(c)) % 65521;
    b = (b + a) % 65521;
  }
  PutBig32(zlib, (b << 16) | a);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string header;
  PutBig32(header, static_cast<uint32_t>(width));
  PutBig32(header, static_cast<uint32_t>(height));
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, no interlace
  PutChunk(png, "IHDR", header);
  PutChunk(png, "IDAT", zlib);
  PutChunk(png, "IEND", "");
  return png;
}

// ---- request checking

// FastAPI's 422 for a body that does not fit the pydantic model.
Json ValidationDetail(std::vector<std::string> loc, std::string msg, std::string type) {
  Json where = Json::array();
  for (auto& part : loc) where.push_back(part);
  return Json{{"detail", Json::array({Json{{"loc", where}, {"msg", msg}, {"type", type}}})}};
}

// The webui's api_middleware handle_exception shape.
Json WebuiError(std::string_view error, std::string_view detail, std::string_view errors) {
  return Json{{"error", error}, {"detail", detail}, {"body", ""}, {"errors", errors}};
}

Json HttpException(int status, std::string_view detail) {
  return WebuiError("HTTPException", detail, fmt::format("{}: {}", status, detail));
}

// The common fields of StableDiffusionProcessing* with their defaults.
Json Defaults(bool img2img) {
  Json d = {{"prompt", ""},
            {"negative_prompt", ""},
            {"styles", Json::array()},
            {"seed", -1},
            {"subseed", -1},
            {"subseed_strength", 0},
            {"seed_resize_from_h", -1},
            {"seed_resize_from_w", -1},
            {"sampler_name", "Euler a"},
            {"scheduler", "Automatic"},
            {"batch_size", 1},
            {"n_iter", 1},
            {"steps", 20},
            {"cfg_scale", 7.0},
            {"width", 512},
            {"height", 512},
            {"restore_faces", nullptr},
            {"tiling", nullptr},
            {"denoising_strength", img2img ? Json(0.75) : Json(nullptr)},
            {"override_settings", Json::object()},
            {"override_settings_restore_afterwards", true},
            {"send_images", true},
            {"save_images", false},
            {"script_name", nullptr},
            {"script_args", Json::array()},
            {"alwayson_scripts", Json::object()},
            {"force_task_id", nullptr},
            {"infotext", nullptr}};
  if (img2img) {
    d["init_images"] = nullptr;
    d["resize_mode"] = 0;
    d["image_cfg_scale"] = nullptr;
    d["mask"] = nullptr;
    d["mask_blur"] = nullptr;
    d["inpainting_fill"] = 0;
    d["inpaint_full_res"] = true;
    d["inpaint_full_res_padding"] = 0;
    d["inpainting_mask_invert"] = 0;
    d["include_init_images"] = false;
  } else {
    d["enable_hr"] = false;
    d["hr_scale"] = 2.0;
    d["hr_upscaler"] = nullptr;
    d["hr_second_pass_steps"] = 0;
  }
  return d;
}

// The first field of the wrong type, as FastAPI's 422 body; nullopt when the body fits.
std::optional<Json> CheckTypes(const Json& body) {
  static const std::vector<std::pair<std::string_view, std::string_view>> kRules = {
      {"prompt", "str"},         {"negative_prompt", "str"}, {"sampler_name", "str"},
      {"sampler_index", "str"},  {"scheduler", "str"},       {"force_task_id", "str"},
      {"seed", "int"},           {"subseed", "int"},         {"batch_size", "int"},
      {"n_iter", "int"},         {"steps", "int"},           {"width", "int"},
      {"height", "int"},         {"cfg_scale", "float"},     {"denoising_strength", "float"},
      {"init_images", "list"},   {"styles", "list"},         {"override_settings", "dict"},
      {"alwayson_scripts", "dict"}};
  for (const auto& [name, kind] : kRules) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) continue;
    bool ok = (kind == "str" && it->is_string()) ||
              (kind == "int" && it->is_number_integer()) ||
              (kind == "float" && it->is_number()) || (kind == "list" && it->is_array()) ||
              (kind == "dict" && it->is_object());
    if (ok) continue;
    std::string msg = kind == "str"     ? "str type expected"
                      : kind == "int"   ? "value is not a valid integer"
                      : kind == "float" ? "value is not a valid float"
                      : kind == "list"  ? "value is not a valid list"
                                        : "value is not a valid dict";
    std::string type = kind == "str"   ? "type_error.str"
                       : kind == "int" ? "type_error.integer"
                       : kind == "float" ? "type_error.float"
                       : kind == "list"  ? "type_error.list"
                                         : "type_error.dict";
    return ValidationDetail({"body", std::string(name)}, msg, type);
  }
  return std::nullopt;
}

// ---- the webui's shared state

class A1111 final : public Personality {
 public:
  explicit A1111(const Options& options) : options_(options) {
    options_json_ = {{"sd_model_checkpoint", kModelTitle},
                     {"sd_checkpoint_hash",
                      "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"},
                     {"samples_format", "png"},
                     {"return_grid", true},
                     {"show_progress_every_n_steps", 10},
                     {"CLIP_stop_at_last_layers", 1},
                     {"sd_vae", "Automatic"}};
  }

  bool Handle(Exchange& ex) override {
    std::string_view path = ex.Path();
    std::string method = ex.Method();
    if (path == "/internal/ping" && method == "GET") {
      ex.Reply(bhttp::status::ok, Json::object());
      return true;
    }
    if (!path.starts_with("/sdapi/v1/")) return false;
    if (options_.fault == "noapi") {
      ex.Reply(bhttp::status::not_found, Json{{"detail", "Not Found"}});
      return true;
    }
    if ((path == "/sdapi/v1/txt2img" || path == "/sdapi/v1/img2img") && method == "POST") {
      Generate(ex, path == "/sdapi/v1/img2img");
    } else if (path == "/sdapi/v1/progress" && method == "GET") {
      ex.Reply(bhttp::status::ok, ProgressJson());
    } else if (path == "/sdapi/v1/interrupt" && method == "POST") {
      Interrupt();
      ex.Reply(bhttp::status::ok, Json::object());
    } else if (path == "/sdapi/v1/skip" && method == "POST") {
      ex.Reply(bhttp::status::ok, Json::object());
    } else if (path == "/sdapi/v1/unload-checkpoint" && method == "POST") {
      loaded_ = false;
      Log(fmt::format("{} a1111 unload-checkpoint", options_.name));
      ex.Reply(bhttp::status::ok, Json::object());
    } else if (path == "/sdapi/v1/reload-checkpoint" && method == "POST") {
      loaded_ = true;
      Log(fmt::format("{} a1111 reload-checkpoint", options_.name));
      ex.Reply(bhttp::status::ok, Json::object());
    } else if (path == "/sdapi/v1/sd-models" && method == "GET") {
      ex.Reply(bhttp::status::ok,
               Json::array({Json{{"title", kModelTitle},
                                 {"model_name", kModelName},
                                 {"hash", kModelHash},
                                 {"sha256", options_json_["sd_checkpoint_hash"]},
                                 {"filename", fmt::format("/webui/models/Stable-diffusion/{}."
                                                          "safetensors",
                                                          kModelName)},
                                 {"config", nullptr}}}));
    } else if (path == "/sdapi/v1/samplers" && method == "GET") {
      Json list = Json::array();
      for (const auto& name : kSamplers) {
        list.push_back(Json{{"name", name}, {"aliases", Json::array()}, {"options", Json::object()}});
      }
      ex.Reply(bhttp::status::ok, list);
    } else if (path == "/sdapi/v1/options" && method == "GET") {
      std::lock_guard lock(mutex_);
      ex.Reply(bhttp::status::ok, options_json_);
    } else if (path == "/sdapi/v1/options" && method == "POST") {
      SetOptions(ex);
    } else if (path == "/sdapi/v1/memory" && method == "GET") {
      int64_t total = 24LL << 30;
      int64_t used = loaded_ ? static_cast<int64_t>(options_.vram_mb) << 20 : 0;
      ex.Reply(bhttp::status::ok,
               Json{{"ram", {{"free", 8LL << 30}, {"used", 8LL << 30}, {"total", 16LL << 30}}},
                    {"cuda",
                     {{"system", {{"free", total - used}, {"used", used}, {"total", total}}}}}});
    } else {
      ex.Reply(bhttp::status::not_found, Json{{"detail", "Not Found"}});
    }
    return true;
  }

 private:
  void SetOptions(Exchange& ex) {
    Json body = ex.BodyJson();
    if (body.is_discarded() || !body.is_object()) {
      ex.Reply(bhttp::status::unprocessable_entity,
               ValidationDetail({"body"}, "value is not a valid dict", "type_error.dict"));
      return;
    }
    if (auto it = body.find("sd_model_checkpoint"); it != body.end()) {
      if (!it->is_string() || (*it != kModelTitle && *it != kModelName)) {
        std::string name = it->is_string() ? it->get<std::string>() : it->dump();
        ex.Reply(bhttp::status::internal_server_error,
                 WebuiError("RuntimeError", "", fmt::format("model '{}' not found", name)));
        return;
      }
    }
    std::lock_guard lock(mutex_);
    for (auto& [key, value] : body.items()) options_json_[key] = value;
    ex.Reply(bhttp::status::ok, Json(nullptr));
  }

  Json ProgressJson() {
    std::lock_guard lock(mutex_);
    Json state = {{"skipped", false},
                  {"interrupted", interrupted_},
                  {"stopping_generation", false},
                  {"job", job_},
                  {"job_count", job_count_},
                  {"job_timestamp", job_timestamp_},
                  {"job_no", job_no_},
                  {"sampling_step", sampling_step_},
                  {"sampling_steps", sampling_steps_}};
    double progress = 0;
    double eta = 0;
    if (job_count_ > 0) {
      progress = 0.01 + static_cast<double>(job_no_) / job_count_;
      if (sampling_steps_ > 0) {
        progress += static_cast<double>(sampling_step_) / sampling_steps_ / job_count_;
      }
      progress = std::min(progress, 1.0);
      double elapsed =
          std::chrono::duration<double>(Clock::now() - job_started_).count();
      eta = elapsed / progress - elapsed;
    }
    return Json{{"progress", progress},
                {"eta_relative", eta},
                {"state", state},
                {"current_image", nullptr},
                {"textinfo", nullptr},
                {"current_task", current_task_.empty() ? Json(nullptr) : Json(current_task_)}};
  }

  void Interrupt() {
    std::string task;
    {
      std::lock_guard lock(mutex_);
      interrupted_ = true;
      task = current_task_;
    }
    wake_.notify_all();
    Log(fmt::format("{} a1111 interrupt task={}", options_.name, task.empty() ? "-" : task));
  }

  // Sleeps one step unless interrupted. Returns false when interrupted.
  bool Step() {
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(options_.work_ms), [&] { return interrupted_; });
    return !interrupted_;
  }

  void Generate(Exchange& ex, bool img2img) {
    Json body = ex.BodyJson();
    if (body.is_discarded()) {
      ex.Reply(bhttp::status::unprocessable_entity,
               ValidationDetail({"body", "0"}, "Expecting value: line 1 column 1 (char 0)",
                                "value_error.jsondecode"));
      return;
    }
    if (!body.is_object()) {
      ex.Reply(bhttp::status::unprocessable_entity,
               ValidationDetail({"body"}, "value is not a valid dict", "type_error.dict"));
      return;
    }
    if (auto bad = CheckTypes(body)) {
      ex.Reply(bhttp::status::unprocessable_entity, *bad);
      return;
    }
    // The request as the pydantic model holds it: defaults filled, unknown keys dropped.
    Json request = Defaults(img2img);
    for (auto& [key, value] : body.items()) {
      if (request.contains(key) || key == "sampler_index") request[key] = value;
    }
    if (auto it = body.find("sampler_index"); it != body.end() && !body.contains("sampler_name")) {
      request["sampler_name"] = *it;
    }
    std::string sampler = request["sampler_name"].get<std::string>();
    if (!kSamplers.contains(sampler)) {
      ex.Reply(bhttp::status::bad_request, HttpException(400, "Sampler not found"));
      return;
    }
    size_t init_bytes = 0;
    if (img2img) {
      if (request["init_images"].is_null()) {
        ex.Reply(bhttp::status::not_found, HttpException(404, "Init image not found"));
        return;
      }
      for (const auto& image : request["init_images"]) {
        auto bytes = image.is_string() ? Unbase64(image.get<std::string>()) : std::nullopt;
        if (!bytes || !LooksLikeImage(*bytes)) {
          ex.Reply(bhttp::status::internal_server_error,
                   HttpException(500, "Invalid encoded image"));
          return;
        }
        init_bytes += bytes->size();
      }
      if (request["init_images"].empty()) {
        ex.Reply(bhttp::status::internal_server_error,
                 WebuiError("IndexError", "", "list index out of range"));
        return;
      }
    }
    int width = request["width"].get<int>();
    int height = request["height"].get<int>();
    int steps = request["steps"].get<int>();
    int batch_size = std::max(1, request["batch_size"].get<int>());
    int n_iter = std::max(1, request["n_iter"].get<int>());
    if (width < 8 || height < 8 || width > kMaxSide || height > kMaxSide) {
      ex.Reply(bhttp::status::internal_server_error,
               WebuiError("ValueError", "",
                          fmt::format("fake a1111: width and height must be in 8..{}", kMaxSide)));
      return;
    }
    // The real webui floors the size to a multiple of 8.
    width -= width % 8;
    height -= height % 8;
    std::string prompt = request["prompt"].get<std::string>();
    bool fail = options_.fault == "fail" || prompt.find("FAKE_FAIL_500") != std::string::npos;
    bool drop = options_.fault == "drop" || prompt.find("FAKE_DROP") != std::string::npos;
    bool malformed =
        options_.fault == "malformed" || prompt.find("FAKE_MALFORMED") != std::string::npos;
    std::string task = request["force_task_id"].is_string()
                           ? request["force_task_id"].get<std::string>()
                           : fmt::format("task({:016x})", Random());
    int64_t seed = request["seed"].get<int64_t>();
    if (seed == -1) seed = static_cast<int64_t>(Random() % 4294967295u);
    Log(fmt::format("{} a1111 {} queued task={} steps={} size={}x{} images={} init_bytes={}",
                    options_.name, img2img ? "img2img" : "txt2img", task, steps, width, height,
                    batch_size * n_iter, init_bytes));

    // The webui's queue_lock: one job at a time, UI and API alike.
    std::lock_guard queue(queue_lock_);
    if (!loaded_) {
      Log(fmt::format("{} a1111 reloading checkpoint for task={}", options_.name, task));
      loaded_ = true;
    }
    Begin(task, img2img, n_iter, steps);
    Log(fmt::format("{} a1111 started task={}", options_.name, task));

    std::vector<int64_t> seeds;
    bool interrupted = false;
    for (int iteration = 0; iteration < n_iter && !interrupted; ++iteration) {
      SetJobNo(iteration);
      for (int step = 0; step < steps; ++step) {
        if (!Step()) {
          interrupted = true;
          break;
        }
        SetStep(step + 1);
        if (step == 0 && (fail || drop)) {
          End();
          if (drop) {
            Log(fmt::format("{} a1111 dropping task={}", options_.name, task));
            ex.Drop();
            return;
          }
          ex.Reply(bhttp::status::internal_server_error,
                   WebuiError("OutOfMemoryError", "",
                              "CUDA out of memory. Tried to allocate 2.00 GiB (fake)"));
          return;
        }
      }
      if (interrupted) break;
      for (int i = 0; i < batch_size; ++i) {
        seeds.push_back(seed + static_cast<int64_t>(seeds.size()));
      }
    }
    End();
    Log(fmt::format("{} a1111 finished task={} images={}{}", options_.name, task, seeds.size(),
                    interrupted ? " interrupted" : ""));

    if (malformed) {
      ex.Reply(bhttp::status::ok,
               "<html><body><h1>502 Bad Gateway</h1>(fake a1111: malformed reply)</body></html>",
               "text/html");
      return;
    }

    Json images = Json::array();
    Json infotexts = Json::array();
    std::string negative = request["negative_prompt"].get<std::string>();
    auto infotext = [&](int64_t s) {
      std::string text = prompt;
      if (!negative.empty()) text += "\nNegative prompt: " + negative;
      text += fmt::format(
          "\nSteps: {}, Sampler: {}, Schedule type: {}, CFG scale: {}, Seed: {}, Size: {}x{}, "
          "Model hash: {}, Model: {}, Version: {}",
          steps, sampler, request["scheduler"].get<std::string>(), request["cfg_scale"].dump(), s,
          width, height, kModelHash, kModelName, kVersion);
      if (img2img) text += fmt::format(", Denoising strength: {}", request["denoising_strength"].dump());
      return text;
    };
    int index_of_first_image = 0;
    bool return_grid = true;
    {
      std::lock_guard lock(mutex_);
      return_grid = options_json_.value("return_grid", true);
    }
    if (seeds.size() > 1 && return_grid) {
      images.push_back(Base64(SolidPng(width, height, 0x808080)));
      infotexts.push_back(infotext(seeds.front()));
      index_of_first_image = 1;
    }
    for (int64_t s : seeds) {
      images.push_back(Base64(SolidPng(width, height, static_cast<uint32_t>(s * 2654435761u) & 0xffffff)));
      infotexts.push_back(infotext(s));
    }
    Json all_prompts = Json::array();
    Json all_negative = Json::array();
    Json all_subseeds = Json::array();
    for (size_t i = 0; i < seeds.size(); ++i) {
      all_prompts.push_back(prompt);
      all_negative.push_back(negative);
      all_subseeds.push_back(seeds[i]);
    }
    Json info = {{"prompt", prompt},
                 {"all_prompts", all_prompts},
                 {"negative_prompt", negative},
                 {"all_negative_prompts", all_negative},
                 {"seed", seed},
                 {"all_seeds", seeds},
                 {"subseed", seed},
                 {"all_subseeds", all_subseeds},
                 {"subseed_strength", request["subseed_strength"]},
                 {"width", width},
                 {"height", height},
                 {"sampler_name", sampler},
                 {"cfg_scale", request["cfg_scale"]},
                 {"steps", steps},
                 {"batch_size", batch_size},
                 {"restore_faces", false},
                 {"face_restoration_model", nullptr},
                 {"sd_model_name", kModelName},
                 {"sd_model_hash", kModelHash},
                 {"sd_vae_name", nullptr},
                 {"sd_vae_hash", nullptr},
                 {"seed_resize_from_w", -1},
                 {"seed_resize_from_h", -1},
                 {"denoising_strength", request["denoising_strength"]},
                 {"extra_generation_params", Json::object()},
                 {"index_of_first_image", index_of_first_image},
                 {"infotexts", infotexts},
                 {"styles", request["styles"]},
                 {"job_timestamp", JobTimestamp()},
                 {"clip_skip", 1},
                 {"is_using_inpainting_conditioning", false},
                 {"version", kVersion}};
    if (img2img && !request["include_init_images"].get<bool>()) {
      request["init_images"] = nullptr;
      request["mask"] = nullptr;
    }
    ex.Reply(bhttp::status::ok,
             Json{{"images", images}, {"parameters", request}, {"info", info.dump()}});
  }

  void Begin(const std::string& task, bool img2img, int n_iter, int steps) {
    std::lock_guard lock(mutex_);
    interrupted_ = false;
    job_ = img2img ? "scripts_img2img" : "scripts_txt2img";
    job_count_ = n_iter;
    job_no_ = 0;
    sampling_step_ = 0;
    sampling_steps_ = steps;
    job_timestamp_ = JobTimestamp();
    job_started_ = Clock::now();
    current_task_ = task;
  }

  void SetJobNo(int job_no) {
    std::lock_guard lock(mutex_);
    job_no_ = job_no;
    sampling_step_ = 0;
  }

  void SetStep(int step) {
    std::lock_guard lock(mutex_);
    sampling_step_ = step;
  }

  // shared.state.end() and finish_task(): idle again.
  void End() {
    std::lock_guard lock(mutex_);
    job_.clear();
    job_count_ = 0;
    job_no_ = 0;
    sampling_step_ = 0;
    sampling_steps_ = 0;
    current_task_.clear();
  }

  static std::string JobTimestamp() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char text[32];
    std::strftime(text, sizeof(text), "%Y%m%d%H%M%S", &tm);
    return text;
  }

  uint64_t Random() {
    std::lock_guard lock(mutex_);
    return rng_();
  }

  const Options& options_;
  std::mutex queue_lock_;  // held for a whole job
  std::atomic<bool> loaded_ = true;

  std::mutex mutex_;  // guards everything below; never held across a reply
  std::condition_variable wake_;  // an interrupt
  Json options_json_;
  bool interrupted_ = false;
  std::string job_;
  int job_count_ = 0;
  int job_no_ = 0;
  int sampling_step_ = 0;
  int sampling_steps_ = 0;
  std::string job_timestamp_ = "0";
  Clock::time_point job_started_;
  std::string current_task_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace

std::unique_ptr<Personality> MakeA1111(const Options& options) {
  return std::make_unique<A1111>(options);
}

}  // namespace gpuq::fake
