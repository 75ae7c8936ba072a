// The CosyVoice personality (docs/protocols.md section 3): the FastAPI runtime's inference_*
// endpoints streaming raw, headerless PCM (s16le, mono) in a chunked body with no Content-Type.
//
// Routes, each for GET and POST (405 {"detail":"Method Not Allowed"} otherwise), with their form
// fields read from a multipart/form-data or application/x-www-form-urlencoded body:
//   /inference_sft            tts_text, spk_id
//   /inference_zero_shot      tts_text, prompt_text, prompt_wav (file)
//   /inference_cross_lingual  tts_text, prompt_wav (file)
//   /inference_instruct       tts_text, spk_id, instruct_text
//   /inference_instruct2      tts_text, instruct_text, prompt_wav (file)
// GET /docs (a Swagger page) and GET /openapi.json: the FastAPI defaults that serve as health
// checks. Every endpoint works whatever model family the sample rate suggests.
//
// Validation, as FastAPI does it, before any streaming: a missing field (or an empty string,
// which FastAPI treats as missing) -> 422 {"detail":[{"type":"missing","loc":["body",FIELD],
// "msg":"Field required","input":null}, ...]}; prompt_wav sent as a text field, not a file ->
// 422 {"detail":[{"type":"value_error","loc":["body","prompt_wav"],...}]}.
//
// Synthesis: tts_text is split into sentences after . ! ? 。！？ (empty ones dropped). For each
// sentence, after --work-ms, the fake sends (code points of the trimmed sentence) x (rate / 20)
// samples of a 440 Hz tone as s16le: so a test can compute the exact byte count. Each sentence
// goes out as two chunks of odd length (split at an odd offset) to exercise a client's
// buffering of half samples. The rate is COSYVOICE_FAKE_SAMPLE_RATE from the environment
// (default 22050, the CosyVoice-300M family; 24000 stands for CosyVoice2/3); the real server
// never sends it, and neither does the fake.
//
// Inference errors happen after the 200 headers, as on the real server (the generator runs
// after StreamingResponse has started): the connection is closed (FIN) without the terminating
// chunk. This happens with zero bytes for an unknown spk_id (built-in speakers: kSpeakers) and
// for a prompt_wav that is not audio (not RIFF/fLaC/OggS/ID3) or a WAV below 16 kHz.
//
// Faults, per request (a magic word in tts_text) or for every inference request (--fault MODE):
//   FAKE_500   / 500    500 "Internal Server Error" (text/plain, Starlette's) before streaming
//   FAKE_CUT   / cut    200, the first sentence and half of the next (an odd byte count; half
//                       of the only sentence when there is one), then the connection is closed
//                       without the terminating chunk: an inference error mid-stream
//   FAKE_EMPTY / empty  200 and a clean, terminated, zero-byte body (a text with nothing to say)
//   FAKE_STALL / stall  200, the first sentence's first chunk, then silence until the client
//                       goes away (for timeouts and cancellation)
//   FAKE_DROP  / drop   the connection is reset before any reply (a crash)
//   FAKE_422   / 422    the form is read as if the route's last field were missing: FastAPI's
//                       real 422 for a client that always sends every field
//   (none)     / empty-cut  200, then closed with zero bytes and no terminating chunk (as for
//                       an unknown spk_id)
// Log lines: "<name> cosyvoice <route> sentences=N bytes=N" when a stream ends whole,
// "... cut after N bytes" when the fake cuts it, "... client gone after N bytes".
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "testing/fake_service/fake_server.hpp"

namespace gpuq::fake {

namespace {

// CosyVoice-300M-SFT's built-in speakers, plus the demo's "luna".
const char* const kSpeakers[] = {"中文女", "中文男", "日语男", "粤语女",
                                 "英文女", "英文男", "韩语女", "luna"};

struct Field {
  std::string value;
  bool is_file = false;
};
using Form = std::map<std::string, Field>;

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The value of `param` in a header like `form-data; name="a"; filename="b"` (quoted or not,
// backslash escapes undone); nullopt when absent.
std::optional<std::string> HeaderParam(std::string_view header, std::string_view param) {
  size_t pos = 0;
  while ((pos = header.find(';', pos)) != std::string_view::npos) {
    ++pos;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    auto eq = header.find('=', pos);
    if (eq == std::string_view::npos) return std::nullopt;
    if (Lower(header.substr(pos, eq - pos)) != param) continue;
    size_t i = eq + 1;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      for (++i; i < header.size() && header[i] != '"'; ++i) {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i];
      }
    } else {
      while (i < header.size() && header[i] != ';') value += header[i++];
      while (!value.empty() && value.back() == ' ') value.pop_back();
    }
    return value;
  }
  return std::nullopt;
}

// multipart/form-data (RFC 7578): parts between "--boundary" lines, each with its headers, a
// blank line and the value up to CRLF "--boundary". A malformed body yields the fields read so
// far (FastAPI would 400; the fields it lacks are 422 here, which a client reports alike).
Form ParseMultipart(std::string_view body, const std::string& boundary) {
  Form form;
  std::string delimiter = "--" + boundary;
  size_t pos = body.find(delimiter);
  while (pos != std::string_view::npos) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") break;  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n") break;
    pos += 2;
    auto headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) break;
    std::string_view headers = body.substr(pos, headers_end - pos);
    size_t value_start = headers_end + 4;
    auto next = body.find("\r\n" + delimiter, value_start);
    if (next == std::string_view::npos) break;
    std::optional<std::string> name, filename;
    size_t line_start = 0;
    while (line_start <= headers.size()) {
      auto line_end = headers.find("\r\n", line_start);
      std::string_view line =
          headers.substr(line_start, line_end == std::string_view::npos ? std::string_view::npos
                                                                        : line_end - line_start);
      auto colon = line.find(':');
      if (colon != std::string_view::npos &&
          Lower(line.substr(0, colon)) == "content-disposition") {
        name = HeaderParam(line, "name");
        filename = HeaderParam(line, "filename");
      }
      if (line_end == std::string_view::npos) break;
      line_start = line_end + 2;
    }
    if (name) {
      form[*name] =
          Field{std::string(body.substr(value_start, next - value_start)), filename.has_value()};
    }
    pos = next + 2;
  }
  return form;
}

Form ParseUrlEncoded(std::string_view body) {
  Form form;
  while (!body.empty()) {
    auto amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string value = eq == std::string_view::npos ? "" : FormDecode(pair.substr(eq + 1));
    form[FormDecode(pair.substr(0, eq))] = Field{std::move(value), false};
  }
  return form;
}

Form ParseForm(const Exchange& ex) {
  std::string content_type(ex.request[bhttp::field::content_type]);
  std::string type = Lower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (type == "multipart/form-data") {
    auto boundary = HeaderParam(content_type, "boundary");
    if (!boundary || boundary->empty()) return {};
    return ParseMultipart(ex.request.body(), *boundary);
  }
  if (type == "application/x-www-form-urlencoded") return ParseUrlEncoded(ex.request.body());
  return {};
}

std::vector<std::string> SplitSentences(std::string_view text) {
  std::vector<std::string> sentences;
  std::string current;
  auto flush = [&] {
    auto first = current.find_first_not_of(" \t\r\n");
    auto last = current.find_last_not_of(" \t\r\n");
    if (first != std::string::npos) {
      std::string trimmed = current.substr(first, last - first + 1);
      // A sentence of punctuation alone says nothing.
      if (trimmed.find_first_not_of(".!?") != std::string::npos && trimmed != "。" &&
          trimmed != "！" && trimmed != "？") {
        sentences.push_back(std::move(trimmed));
      }
    }
    current.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    current += c;
    if (c == '.' || c == '!' || c == '?') {
      flush();
      continue;
    }
    for (std::string_view mark : {"。", "！", "？"}) {
      if (text.substr(i, mark.size()) == mark) {
        current += std::string(text.substr(i + 1, mark.size() - 1));
        i += mark.size() - 1;
        flush();
        break;
      }
    }
  }
  flush();
  return sentences;
}

size_t CodePoints(std::string_view text) {
  size_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

int SampleRate() {
  const char* text = std::getenv("COSYVOICE_FAKE_SAMPLE_RATE");
  int rate = text != nullptr ? std::atoi(text) : 0;
  return rate >= 8000 && rate <= 192000 ? rate : 22050;
}

// A sentence's PCM: CodePoints x rate/20 samples of a 440 Hz tone, s16le.
std::string Pcm(const std::string& sentence, int rate) {
  size_t samples = CodePoints(sentence) * static_cast<size_t>(rate / 20);
  std::string pcm(samples * 2, '\0');
  for (size_t k = 0; k < samples; ++k) {
    auto value = static_cast<int16_t>(std::lround(9830.0 * std::sin(2 * M_PI * 440.0 * k / rate)));
    auto bits = static_cast<uint16_t>(value);
    pcm[2 * k] = static_cast<char>(bits & 0xFF);
    pcm[2 * k + 1] = static_cast<char>(bits >> 8);
  }
  return pcm;
}

// Whether prompt_wav is audio the server can load at >= 16 kHz.
bool ReadableAudio(const std::string& bytes) {
  if (bytes.starts_with("RIFF") && bytes.size() >= 28 && bytes.substr(8, 4) == "WAVE") {
    auto byte = [&](size_t i) {
      return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i]));
    };
    uint32_t rate = byte(24) | byte(25) << 8 | byte(26) << 16 | byte(27) << 24;
    return rate >= 16000;
  }
  return bytes.starts_with("fLaC") || bytes.starts_with("OggS") || bytes.starts_with("ID3");
}

// Waits until the client closes its side (or `limit` passes); the stall fault's silence.
void WaitForClientGone(Exchange& ex, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  int fd = ex.socket.native_handle();
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{.fd = fd, .events = POLLIN | POLLRDHUP, .revents = 0};
    if (::poll(&p, 1, 100) > 0) {
      char byte;
      if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) return;
    }
  }
}

// Ends a started stream without the terminating chunk, with a FIN as uvicorn does when the
// generator raises.
void Cut(Exchange& ex) {
  beast::error_code ec;
  ex.socket.shutdown(tcp::socket::shutdown_both, ec);
  ex.socket.close(ec);
  ex.done = true;
}

struct Route {
  std::string_view path;
  std::vector<std::string_view> fields;
};

const Route kRoutes[] = {
    {"/inference_sft", {"tts_text", "spk_id"}},
    {"/inference_zero_shot", {"tts_text", "prompt_text", "prompt_wav"}},
    {"/inference_cross_lingual", {"tts_text", "prompt_wav"}},
    {"/inference_instruct", {"tts_text", "spk_id", "instruct_text"}},
    {"/inference_instruct2", {"tts_text", "instruct_text", "prompt_wav"}},
};

class CosyVoice final : public Personality {
 public:
  explicit CosyVoice(const Options& options) : options_(options), rate_(SampleRate()) {}

  bool Handle(Exchange& ex) override {
    std::string_view path = ex.Path();
    if (path == "/docs" && ex.Method() == "GET") {
      ex.Reply(bhttp::status::ok,
               "<!DOCTYPE html><html><head><title>FastAPI - Swagger UI</title></head>"
               "<body><div id=\"swagger-ui\"></div></body></html>",
               "text/html; charset=utf-8");
      return true;
    }
    if (path == "/openapi.json" && ex.Method() == "GET") {
      Json paths = Json::object();
      for (const auto& route : kRoutes) {
        paths[std::string(route.path)] = {{"get", Json::object()}, {"post", Json::object()}};
      }
      ex.Reply(bhttp::status::ok, Json{{"openapi", "3.1.0"},
                                       {"info", {{"title", "FastAPI"}, {"version", "0.1.0"}}},
                                       {"paths", paths}});
      return true;
    }
    for (const auto& route : kRoutes) {
      if (path != route.path) continue;
      if (ex.Method() != "GET" && ex.Method() != "POST") {
        ex.Reply(bhttp::status::method_not_allowed, Json{{"detail", "Method Not Allowed"}});
        return true;
      }
      Inference(ex, route);
      return true;
    }
    return false;
  }

 private:
  void Inference(Exchange& ex, const Route& route) {
    Form form = ParseForm(ex);
    if (auto it = form.find("tts_text");
        options_.fault == "422" ||
        (it != form.end() && it->second.value.find("FAKE_422") != std::string::npos)) {
      form.erase(std::string(route.fields.back()));
    }
    Json detail = Json::array();
    for (auto field : route.fields) {
      auto it = form.find(std::string(field));
      if (it == form.end() || it->second.value.empty()) {
        detail.push_back({{"type", "missing"},
                          {"loc", {"body", field}},
                          {"msg", "Field required"},
                          {"input", nullptr}});
      } else if (field == "prompt_wav" && !it->second.is_file) {
        detail.push_back({{"type", "value_error"},
                          {"loc", {"body", field}},
                          {"msg", "Value error, Expected UploadFile, received: <class 'str'>"},
                          {"input", it->second.value},
                          {"ctx", {{"error", Json::object()}}}});
      }
    }
    if (!detail.empty()) {
      ex.Reply(bhttp::status::unprocessable_entity, Json{{"detail", detail}});
      return;
    }
    const std::string& text = form["tts_text"].value;
    auto fault = [&](std::string_view magic, std::string_view mode) {
      return text.find(magic) != std::string::npos || options_.fault == mode;
    };
    if (fault("FAKE_DROP", "drop")) {
      ex.Drop();
      return;
    }
    if (fault("FAKE_500", "500")) {
      ex.Reply(bhttp::status::internal_server_error, "Internal Server Error",
               "text/plain; charset=utf-8");
      return;
    }
    std::string what(route.path.substr(1));
    if (!ex.StartChunked(bhttp::status::ok, "")) return;
    // From here on, failures are the generator's: the headers are out.
    bool unknown_speaker = false;
    if (auto it = form.find("spk_id"); it != form.end()) {
      unknown_speaker = true;
      for (const char* known : kSpeakers) unknown_speaker &= it->second.value != known;
    }
    bool bad_audio = form.contains("prompt_wav") && !ReadableAudio(form["prompt_wav"].value);
    if (unknown_speaker || bad_audio || options_.fault == "empty-cut") {
      Log(fmt::format("{} cosyvoice {} cut after 0 bytes ({})", options_.name, what,
                      unknown_speaker ? "unknown spk_id" : "unreadable prompt_wav"));
      Cut(ex);
      return;
    }
    if (fault("FAKE_EMPTY", "empty")) {
      ex.EndChunked();
      return;
    }
    bool cut = fault("FAKE_CUT", "cut");
    bool stall = fault("FAKE_STALL", "stall");
    auto sentences = SplitSentences(text);
    size_t sent = 0;
    for (size_t i = 0; i < sentences.size(); ++i) {
      // The model's time for one sentence (the simulated work, not a wait for a condition).
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.work_ms));
      std::string pcm = Pcm(sentences[i], rate_);
      size_t split = pcm.size() / 4 * 2 + 1;  // odd: both halves have odd lengths
      bool last_before_cut = cut && (i + 1 == sentences.size() || i == 1);
      if (last_before_cut) pcm.resize(split);
      if (!ex.Chunk(std::string_view(pcm).substr(0, split))) return Gone(what, sent);
      sent += std::min(split, pcm.size());
      if (stall) {
        WaitForClientGone(ex, std::chrono::minutes(10));
        return Gone(what, sent);
      }
      if (last_before_cut) {
        Log(fmt::format("{} cosyvoice {} cut after {} bytes", options_.name, what, sent));
        Cut(ex);
        return;
      }
      if (!ex.Chunk(std::string_view(pcm).substr(split))) return Gone(what, sent);
      sent += pcm.size() - split;
    }
    ex.EndChunked();
    Log(fmt::format("{} cosyvoice {} sentences={} bytes={}", options_.name, what, sentences.size(),
                    sent));
  }

  void Gone(const std::string& what, size_t sent) {
    Log(fmt::format("{} cosyvoice {} client gone after {} bytes", options_.name, what, sent));
  }

  const Options& options_;
  int rate_;
};

}  // namespace

std::unique_ptr<Personality> MakeCosyVoice(const Options& options) {
  return std::make_unique<CosyVoice>(options);
}

}  // namespace gpuq::fake
