#include "connectors/cosyvoice/cosyvoice_connector.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stop_token>

#include "http/client.hpp"
#include "http/multipart.hpp"

namespace gpuq::connectors {

namespace fs = std::filesystem;

namespace {

constexpr int kDefaultSampleRate = 22050;  // CosyVoice-300M; CosyVoice2/3 need 24000
constexpr const char* kDefaultOutput = "audio.wav";
constexpr const char* kDefaultInstructText = "Speak naturally and clearly.";
constexpr size_t kWavHeaderBytes = 44;
constexpr double kProgressEverySeconds = 0.5;  // of audio received

enum class Mode { kSft, kZeroShot, kCrossLingual, kInstruct };

std::optional<Mode> ParseMode(std::string_view name) {
  if (name == "sft") return Mode::kSft;
  if (name == "zero_shot" || name == "clone") return Mode::kZeroShot;
  if (name == "cross_lingual") return Mode::kCrossLingual;
  if (name == "instruct") return Mode::kInstruct;
  return std::nullopt;
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kSft:
      return "sft";
    case Mode::kZeroShot:
      return "zero_shot";
    case Mode::kCrossLingual:
      return "cross_lingual";
    case Mode::kInstruct:
      return "instruct";
  }
  return "?";
}

Error Invalid(std::string message) { return Error{Errc::kInvalidArgument, std::move(message)}; }

struct Settings {
  int sample_rate = kDefaultSampleRate;
  fs::path voices_dir;
  Mode default_mode = Mode::kZeroShot;
  bool instruct_v1 = false;  // instruct_api = "instruct"
  std::string instruct_text = kDefaultInstructText;
};

// Reads the settings; a bad key keeps its default and adds a problem when `problems` is set.
Settings ReadSettings(const Json& json, std::vector<SettingProblem>* problems) {
  Settings settings;
  auto problem = [&](std::string key, std::string message) {
    if (problems != nullptr) problems->push_back({std::move(key), std::move(message)});
  };
  if (!json.is_object()) return settings;
  for (const auto& [key, value] : json.items()) {
    if (key == "sample_rate") {
      if (!value.is_number_integer() || value.get<long long>() < 8000 ||
          value.get<long long>() > 192000) {
        problem(key,
                "must be an integer sample rate in Hz (22050 for CosyVoice-300M, 24000 for "
                "CosyVoice2/3)");
      } else {
        settings.sample_rate = value.get<int>();
      }
    } else if (key == "voices_dir") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        problem(key, "must be a folder path");
      } else {
        settings.voices_dir = value.get<std::string>();
      }
    } else if (key == "default_mode") {
      auto mode = value.is_string() ? ParseMode(value.get<std::string>()) : std::nullopt;
      if (!mode) {
        problem(key, "must be one of sft, zero_shot, clone, instruct, cross_lingual");
      } else {
        settings.default_mode = *mode;
      }
    } else if (key == "instruct_api") {
      if (value != "instruct2" && value != "instruct") {
        problem(key,
                "must be \"instruct2\" (CosyVoice2/3) or \"instruct\" (CosyVoice-300M-Instruct)");
      } else {
        settings.instruct_v1 = value == "instruct";
      }
    } else if (key == "instruct_text") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        problem(key, "must be a non-empty string");
      } else {
        settings.instruct_text = value.get<std::string>();
      }
    } else {
      problem(key,
              "unknown setting for the cosyvoice connector (sample_rate, voices_dir, "
              "default_mode, instruct_api, instruct_text)");
    }
  }
  return settings;
}

// Whether `path` (lexically normal, relative) climbs out of where it is resolved.
bool Leaves(const fs::path& relative) {
  return relative.empty() || relative == "." || *relative.begin() == "..";
}

// What one run asks for, checked.
struct Request {
  Mode mode = Mode::kZeroShot;
  std::string text;
  std::string voice_id;
  std::string instruct_text;
  std::string prompt_text;  // zero_shot: the payload's or the voice's transcript
  fs::path voice_wav;       // modes that send prompt_wav
  fs::path output;          // absolute
  bool in_asset_root = false;
};

bool SendsPromptWav(Mode mode, const Settings& settings) {
  return mode == Mode::kZeroShot || mode == Mode::kCrossLingual ||
         (mode == Mode::kInstruct && !settings.instruct_v1);
}

Result<std::string> OptionalString(const Json& payload, const char* key) {
  auto it = payload.find(key);
  if (it == payload.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Invalid(fmt::format("cosyvoice payload.{} must be a string", key));
  return it->get<std::string>();
}

// The output file: relative to the run dir, or absolute inside the asset root. Lexical.
Result<fs::path> ResolveOutput(const std::string& wanted, const fs::path& run_dir,
                               const fs::path& asset_root, bool* in_asset_root) {
  fs::path path(wanted.empty() ? kDefaultOutput : wanted);
  if (wanted.find('\0') != std::string::npos || (!wanted.empty() && wanted.back() == '/')) {
    return Invalid(fmt::format("cosyvoice output_path {:?} is not a file name", wanted));
  }
  if (path.is_relative()) {
    fs::path normal = path.lexically_normal();
    if (Leaves(normal)) {
      return Invalid(fmt::format(
          "cosyvoice output_path {:?} leaves the run dir (a relative path is resolved inside it)",
          wanted));
    }
    *in_asset_root = false;
    return run_dir / normal;
  }
  if (asset_root.empty()) {
    return Invalid(fmt::format(
        "cosyvoice output_path {:?} is absolute but no asset root is configured (ASSET_PATH)",
        wanted));
  }
  fs::path normal = path.lexically_normal();
  fs::path inside = normal.lexically_relative(asset_root.lexically_normal());
  if (Leaves(inside)) {
    return Invalid(
        fmt::format("cosyvoice output_path {:?} is outside the asset root {} (an "
                    "absolute path must be inside it)",
                    wanted, asset_root.string()));
  }
  *in_asset_root = true;
  return asset_root.lexically_normal() / inside;
}

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  if (!in || !(bytes << in.rdbuf())) {
    return Invalid(fmt::format("cannot read {}", path.string()));
  }
  return bytes.str();
}

std::string Trimmed(std::string text) {
  auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

Result<Request> ReadRequest(const TaskType& type, const Settings& settings, const Json& payload,
                            const fs::path& run_dir, const fs::path& asset_root) {
  if (!payload.is_object()) return Invalid("cosyvoice payload must be a JSON object");
  Request request;
  BOOST_OUTCOME_TRY(request.text, OptionalString(payload, "text"));
  if (request.text.empty())
    return Invalid("cosyvoice payload.text (the words to speak) is required");
  BOOST_OUTCOME_TRY(request.voice_id, OptionalString(payload, "voice_id"));
  BOOST_OUTCOME_TRY(auto mode_name, OptionalString(payload, "mode"));
  request.mode = settings.default_mode;
  if (!mode_name.empty()) {
    auto mode = ParseMode(mode_name);
    if (!mode) {
      return Invalid(fmt::format(
          "cosyvoice payload.mode {:?} is unknown: sft, zero_shot (or clone), instruct or "
          "cross_lingual",
          mode_name));
    }
    request.mode = *mode;
  }
  if (request.voice_id.empty()) {
    return Invalid(
        fmt::format("cosyvoice payload.voice_id is required ({} mode)", ModeName(request.mode)));
  }
  BOOST_OUTCOME_TRY(request.instruct_text, OptionalString(payload, "instruct_text"));
  if (request.instruct_text.empty()) request.instruct_text = settings.instruct_text;
  BOOST_OUTCOME_TRY(request.prompt_text, OptionalString(payload, "prompt_text"));
  BOOST_OUTCOME_TRY(auto output_path, OptionalString(payload, "output_path"));
  BOOST_OUTCOME_TRY(request.output,
                    ResolveOutput(output_path, run_dir, asset_root, &request.in_asset_root));

  if (!SendsPromptWav(request.mode, settings)) return request;  // spk_id: the server knows it
  const std::string& voice = request.voice_id;
  if (voice.find('/') != std::string::npos || voice.find('\\') != std::string::npos ||
      voice.find('\0') != std::string::npos || voice.front() == '.') {
    return Invalid(fmt::format("cosyvoice voice_id {:?} is not a plain voice name", voice));
  }
  // Without voices_dir, the asset root's voices/ (ASSET_PATH: where the notes kept assets).
  fs::path voices_dir = settings.voices_dir;
  if (voices_dir.empty() && !asset_root.empty()) voices_dir = asset_root / "voices";
  if (voices_dir.empty()) {
    return Invalid(fmt::format(
        "cosyvoice {} mode needs reference voices: set task_types.{}.voices_dir to the folder "
        "of <voice_id>.wav files",
        ModeName(request.mode), type.name));
  }
  request.voice_wav = voices_dir / (voice + ".wav");
  std::error_code ec;
  if (!fs::is_regular_file(request.voice_wav, ec)) {
    return Invalid(
        fmt::format("cosyvoice voice {:?} is unknown: no {}", voice, request.voice_wav.string()));
  }
  if (request.mode == Mode::kZeroShot && request.prompt_text.empty()) {
    fs::path transcript = voices_dir / (voice + ".txt");
    auto text = ReadFile(transcript);
    if (text) request.prompt_text = Trimmed(text.value());
    if (request.prompt_text.empty()) {
      return Invalid(fmt::format(
          "cosyvoice zero_shot needs the transcript of voice {:?}: put it in {} or give "
          "payload.prompt_text",
          voice, transcript.string()));
    }
  }
  return request;
}

// The 44-byte RIFF header of a PCM s16le mono WAV with `data_bytes` of samples.
std::string WavHeader(int sample_rate, uint32_t data_bytes) {
  std::string header;
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) header += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  auto u16 = [&](uint16_t v) {
    header += static_cast<char>(v & 0xFF);
    header += static_cast<char>(v >> 8);
  };
  header += "RIFF";
  u32(36 + data_bytes);
  header += "WAVEfmt ";
  u32(16);
  u16(1);  // PCM
  u16(1);  // mono
  u32(static_cast<uint32_t>(sample_rate));
  u32(static_cast<uint32_t>(sample_rate) * 2);  // bytes per second
  u16(2);                                       // bytes per frame
  u16(16);                                      // bits per sample
  header += "data";
  u32(data_bytes);
  return header;
}

// FastAPI's 422 detail as "field: message; ...".
std::string DescribeDetail(const std::string& body) {
  auto json = Json::parse(body, nullptr, false);
  if (!json.is_object() || !json.contains("detail")) return body.substr(0, 200);
  const Json& detail = json["detail"];
  if (!detail.is_array()) return detail.is_string() ? detail.get<std::string>() : detail.dump();
  std::string out;
  for (const auto& item : detail) {
    if (!out.empty()) out += "; ";
    std::string field = "?";
    if (item.contains("loc") && item["loc"].is_array() && !item["loc"].empty()) {
      const Json& last = item["loc"].back();
      field = last.is_string() ? last.get<std::string>() : last.dump();
    }
    out += field + ": " +
           (item.contains("msg") && item["msg"].is_string() ? item["msg"].get<std::string>()
                                                            : item.dump());
  }
  return out;
}

// Joins a base URL's path ("http://h:p/tts") and an endpoint without doubling '/'.
std::string JoinTarget(std::string base, const std::string& path) {
  if (auto q = base.find('?'); q != std::string::npos) base.resize(q);
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + path;
}

// Refuses an output whose existing folders lead outside `root` through a symlink.
Result<void> CheckRealLocation(const fs::path& output, const fs::path& root) {
  std::error_code ec;
  fs::path real_root = fs::weakly_canonical(root, ec);
  if (ec) return Ok();  // the root does not exist yet: nothing can point out of it
  fs::path real_parent = fs::weakly_canonical(output.parent_path(), ec);
  fs::path inside = real_parent.lexically_relative(real_root);  // "." when the root itself
  if (ec || inside.empty() || *inside.begin() == "..") {
    return Invalid(fmt::format("cosyvoice output {} leads outside {} through a symlink",
                               output.string(), root.string()));
  }
  return Ok();
}

}  // namespace

std::vector<SettingProblem> CosyVoiceConnector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  ReadSettings(type.settings, &problems);
  return problems;
}

Result<void> CosyVoiceConnector::Validate(const TaskType& type, const Json& payload) const {
  // A stand-in run dir: only whether the output path stays inside matters here.
  BOOST_OUTCOME_TRY(ReadRequest(type, ReadSettings(type.settings, nullptr), payload, "/run-dir",
                                options_.asset_root));
  return Ok();
}

Result<Outcome> CosyVoiceConnector::Execute(RunContext& ctx) {
  const TaskType& type = ctx.task_type;
  std::vector<SettingProblem> problems;
  Settings settings = ReadSettings(type.settings, &problems);
  if (!problems.empty()) {
    return Invalid(fmt::format("task_types.{}.{}: {}", type.name, problems.front().key,
                               problems.front().message));
  }
  if (ctx.service_url.empty()) {
    return Invalid(
        fmt::format("task type {} has no service URL: the cosyvoice connector needs a "
                    "service-bound task type",
                    type.name));
  }
  BOOST_OUTCOME_TRY(auto base, http::ParseHttpUrl(ctx.service_url));
  BOOST_OUTCOME_TRY(auto request,
                    ReadRequest(type, settings, ctx.run.payload, ctx.run_dir, options_.asset_root));

  std::string endpoint;
  std::vector<http::FormPart> parts = {{.name = "tts_text", .value = request.text}};
  switch (request.mode) {
    case Mode::kSft:
      endpoint = "/inference_sft";
      parts.push_back({.name = "spk_id", .value = request.voice_id});
      break;
    case Mode::kZeroShot:
      endpoint = "/inference_zero_shot";
      parts.push_back({.name = "prompt_text", .value = request.prompt_text});
      break;
    case Mode::kCrossLingual:
      endpoint = "/inference_cross_lingual";
      break;
    case Mode::kInstruct:
      endpoint = settings.instruct_v1 ? "/inference_instruct" : "/inference_instruct2";
      if (settings.instruct_v1) parts.push_back({.name = "spk_id", .value = request.voice_id});
      parts.push_back({.name = "instruct_text", .value = request.instruct_text});
      break;
  }
  if (!request.voice_wav.empty()) {
    auto wav = ReadFile(request.voice_wav);
    if (!wav)
      return Invalid(
          fmt::format("cosyvoice voice {:?}: {}", request.voice_id, wav.error().message));
    parts.push_back({.name = "prompt_wav",
                     .value = std::move(wav).value(),
                     .filename = request.voice_wav.filename().string(),
                     .content_type = "audio/wav"});
  }
  http::FormBody form = http::EncodeForm(parts);

  // The output: created next to its final name and renamed once whole.
  const fs::path& root = request.in_asset_root ? options_.asset_root : ctx.run_dir;
  std::error_code ec;
  fs::create_directories(request.output.parent_path(), ec);
  if (ec) {
    return Error{Errc::kInternal, fmt::format("cannot create {}: {}",
                                              request.output.parent_path().string(), ec.message())};
  }
  BOOST_OUTCOME_TRY(CheckRealLocation(request.output, root));
  fs::path partial = request.output;
  partial += ".part";
  std::ofstream file(partial, std::ios::binary | std::ios::trunc);
  file << WavHeader(settings.sample_rate, 0);
  if (!file) {
    return Error{Errc::kInternal, fmt::format("cannot write {}", partial.string())};
  }
  auto discard = [&] {
    file.close();
    fs::remove(partial, ec);
  };

  std::ofstream log(ctx.log_file, std::ios::app);
  std::string url = fmt::format("http://{}:{}{}", base.endpoint.host, base.endpoint.port,
                                JoinTarget(base.target, endpoint));
  log << fmt::format("POST {} mode={} voice={} text_chars={} sample_rate={} output={}\n", url,
                     ModeName(request.mode), request.voice_id, request.text.size(),
                     settings.sample_rate, request.output.string())
      << std::flush;

  // The agent enforces the run's timeout through ctx.stop; the socket deadline only catches a
  // server gone silent (a long sentence takes seconds, never the whole run's time).
  int timeout_s = ctx.run.timeout_s > 0 ? ctx.run.timeout_s : type.timeout_s;
  http::Client client(base.endpoint, std::chrono::seconds(std::max(timeout_s, 1)));
  std::stop_callback abort_on_stop(ctx.stop, [&client] { client.Abort(); });

  uint64_t received = 0;  // bytes of PCM, the odd byte included
  uint64_t written = 0;   // whole samples written after the header
  std::string pending;    // an odd trailing byte: half a sample
  bool write_failed = false;
  double next_progress_s = kProgressEverySeconds;
  auto started = std::chrono::steady_clock::now();
  auto on_data = [&](std::string_view data) {
    received += data.size();
    pending.append(data);
    size_t whole = pending.size() & ~size_t{1};
    file.write(pending.data(), static_cast<std::streamsize>(whole));
    pending.erase(0, whole);
    written += whole;
    if (!file) {
      write_failed = true;
      return false;
    }
    double seconds = static_cast<double>(written / 2) / settings.sample_rate;
    if (seconds >= next_progress_s) {
      next_progress_s = seconds + kProgressEverySeconds;
      ctx.report_progress(Progress{.fraction = std::nullopt,
                                   .message = fmt::format("{:.1f} s of audio received", seconds)});
    }
    return true;
  };
  auto response = client.StreamBody("POST", JoinTarget(base.target, endpoint), form.body,
                                    form.content_type, on_data);
  auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);

  if (ctx.stop.stop_requested()) {
    discard();
    log << fmt::format("stopped after {} ms, {} bytes\n", took.count(), received);
    return Error{Errc::kUnavailable, "cosyvoice request stopped"};
  }
  if (write_failed) {
    discard();
    return Error{Errc::kInternal, fmt::format("cannot write {}", partial.string())};
  }
  if (!response) {
    discard();
    const Error& error = response.error();
    log << fmt::format("failed after {} ms, {} bytes: {}\n", took.count(), received, error.message);
    // The only way to tell "the body stopped" from "no reply at all" is StreamBody's wording.
    bool cut_off = error.message.find("cut off") != std::string::npos;
    if (cut_off && received == 0) {
      return Invalid(fmt::format(
          "cosyvoice {} ended the stream after 0 bytes: the server failed before any audio "
          "(unknown voice {:?}? unreadable prompt wav? see its log)",
          endpoint, request.voice_id));
    }
    if (cut_off) {
      return Error{Errc::kUnavailable,
                   fmt::format("cosyvoice {} ended the stream after {} bytes: the server failed "
                               "mid-synthesis (out of memory? see its log)",
                               endpoint, received)};
    }
    return Error{error.code, fmt::format("cosyvoice {}: {}", endpoint, error.message)};
  }
  const auto& reply = response.value();
  if (reply.status < 200 || reply.status >= 300) {
    discard();
    log << fmt::format("status {} after {} ms: {}\n", reply.status, took.count(), reply.body);
    if (reply.status == 422) {
      return Invalid(fmt::format("cosyvoice {} refused the form (422): {}", endpoint,
                                 DescribeDetail(reply.body)));
    }
    bool transient = reply.status == 502 || reply.status == 503 || reply.status == 504;
    std::string body = reply.body.size() > 200 ? reply.body.substr(0, 200) + "..." : reply.body;
    return Error{transient ? Errc::kUnavailable : Errc::kInvalidArgument,
                 fmt::format("cosyvoice {} replied {}: {}", endpoint, reply.status, body)};
  }
  if (received == 0) {
    discard();
    log << fmt::format("status {} after {} ms with no audio\n", reply.status, took.count());
    return Invalid(fmt::format(
        "cosyvoice {} returned no audio (200 with an empty body): nothing to say in the text, "
        "or the server failed before any audio (see its log)",
        endpoint));
  }
  if (!pending.empty()) {
    log << "the stream ended on half a sample: its last byte is dropped\n";
  }
  if (written > 0xFFFFFFFFull - 36) {
    discard();
    return Invalid(fmt::format("cosyvoice {} returned {} bytes: more than a WAV file holds",
                               endpoint, written));
  }
  file.seekp(0);
  file << WavHeader(settings.sample_rate, static_cast<uint32_t>(written));
  file.close();
  if (!file) {
    fs::remove(partial, ec);
    return Error{Errc::kInternal, fmt::format("cannot write {}", partial.string())};
  }
  fs::rename(partial, request.output, ec);
  if (ec) {
    fs::remove(partial, ec);
    return Error{Errc::kInternal, fmt::format("cannot rename {} to {}: {}", partial.string(),
                                              request.output.string(), ec.message())};
  }

  double duration_s = static_cast<double>(written / 2) / settings.sample_rate;
  log << fmt::format("status {} after {} ms: {} bytes, {:.2f} s of audio at {} Hz -> {}\n",
                     reply.status, took.count(), written, duration_s, settings.sample_rate,
                     request.output.string());
  Outcome outcome;
  fs::path inside_data = request.output.lexically_relative(ctx.data_dir.lexically_normal());
  bool in_data_dir = !Leaves(inside_data);
  std::string output = in_data_dir ? inside_data.generic_string() : request.output.string();
  if (in_data_dir) outcome.files.push_back(output);
  outcome.result = Json{{"output", output},
                        {"outside_run_dir", request.in_asset_root},
                        {"sample_rate", settings.sample_rate},
                        {"duration_s", duration_s},
                        {"bytes", written},
                        {"mode", ModeName(request.mode)},
                        {"voice_id", request.voice_id}};
  ctx.report_progress(
      Progress{.fraction = 1.0, .message = fmt::format("{:.1f} s of audio written", duration_s)});
  return outcome;
}

}  // namespace gpuq::connectors
