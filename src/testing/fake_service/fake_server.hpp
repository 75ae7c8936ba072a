#pragma once
// Internal to gpuq-fake-service: the options, one request/response exchange on a connection,
// and the personalities (the protocol each fake speaks). Every .cpp here speaks HTTP through
// Beast, so Beast is in this header on purpose.
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace gpuq::fake {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = boost::asio::ip::tcp;
using Json = nlohmann::json;

struct Options {
  int port = 0;
  std::string name = "fake";
  std::string personality = "generic";  // generic | comfyui | a1111 | cosyvoice | ollama
  int vram_mb = 0;            // reported by /health (and the personality's own memory figures)
  int startup_ms = 0;         // refused connections until then (loading weights)
  int work_ms = 0;            // how long one unit of work takes (a step, a sentence, a token)
  std::string fault;          // the personality's failure mode (see its file), "" = none
  std::string data_dir;       // where a personality keeps files (ComfyUI's input/output)
  bool fail_health = false;
  std::optional<int> exit_after_ms;
  bool ignore_sigterm = false;
  bool no_pdeathsig = false;
};

// One line on stdout (several connection threads write; one fputs per line).
void Log(const std::string& line);

// application/x-www-form-urlencoded decoding (a query string's parts): %XX and '+'.
std::string FormDecode(std::string_view text);

// One request on a connection and the reply to it. A personality may answer with one reply,
// stream a chunked body, drop the connection, or take the socket over (a WebSocket upgrade:
// then it sets `done` so the server loop lets go of the connection).
class Exchange {
 public:
  Exchange(tcp::socket& socket, beast::flat_buffer& buffer,
           bhttp::request<bhttp::string_body>& request, const Options& options, std::string gpu)
      : socket(socket), buffer(buffer), request(request), options(options), gpu(std::move(gpu)) {}

  tcp::socket& socket;
  beast::flat_buffer& buffer;  // bytes read past the request (needed by a WebSocket accept)
  bhttp::request<bhttp::string_body>& request;
  const Options& options;
  const std::string gpu;       // CUDA_VISIBLE_DEVICES as the fake saw it

  bool done = false;       // the connection must not be used by the server loop any more
  int status_sent = 0;     // for the request log line

  std::string_view Path() const;   // the target without its query
  std::string Method() const;      // "GET", "POST"
  // A query parameter, percent-decoded; nullopt when absent.
  std::optional<std::string> Query(std::string_view key) const;
  // The body as JSON: a discarded value (is_discarded()) when it does not parse.
  Json BodyJson() const;

  void Reply(bhttp::status status, const Json& body);
  void Reply(bhttp::status status, std::string body, std::string_view content_type);
  void ReplyEmpty(bhttp::status status);  // no body, no Content-Type

  // Chunked streaming: headers now, then any number of chunks, then the terminating chunk.
  // An empty content_type sends no Content-Type header (CosyVoice's StreamingResponse).
  bool StartChunked(bhttp::status status, std::string_view content_type);
  bool Chunk(std::string_view data);  // false when the client went away
  void EndChunked();
  // Closes the socket without a reply or in the middle of a stream (a crash, a cut-off body).
  void Drop();
};

class Personality {
 public:
  virtual ~Personality() = default;
  // Answers the request when the route is this personality's; false leaves it to the generic
  // routes (/health, /work) and then a 404.
  virtual bool Handle(Exchange& ex) = 0;
};

// Each defined in its own file; nullptr for an unknown name.
std::unique_ptr<Personality> MakePersonality(const Options& options);
std::unique_ptr<Personality> MakeComfyUi(const Options& options);
std::unique_ptr<Personality> MakeA1111(const Options& options);
std::unique_ptr<Personality> MakeCosyVoice(const Options& options);
std::unique_ptr<Personality> MakeOllama(const Options& options);

}  // namespace gpuq::fake
