#pragma once
// The CLI's view of the API: JSON in, JSON out, server errors turned into Error values.
#include <chrono>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "http/client.hpp"

namespace gpuq::cli {

struct GlobalOptions {
  std::string server = "http://127.0.0.1:8000";  // --server / GPUQ_SERVER
  std::string token;                             // --token / GPUQ_TOKEN
  bool json = false;                             // --json: machine-readable output
};

class ApiClient {
 public:
  // `timeout` bounds each request (the GPU commands wait for services to start: minutes).
  static Result<ApiClient> Connect(const GlobalOptions& options,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // GET/POST returning the parsed JSON body of a 2xx; a non-2xx becomes an Error whose code
  // follows the status (404 -> kNotFound ...) and whose message is the server's `detail`.
  Result<nlohmann::json> GetJson(std::string_view target);
  Result<nlohmann::json> PostJson(std::string_view target, const nlohmann::json& body,
                                  std::string_view idempotency_key = {});
  // A raw GET for files and logs (body as bytes); non-2xx as above.
  Result<std::string> GetRaw(std::string_view target);
  http::Client& http() { return *client_; }

 private:
  explicit ApiClient(std::unique_ptr<http::Client> client) : client_(std::move(client)) {}
  Result<http::Response> Check(Result<http::Response> response);
  std::unique_ptr<http::Client> client_;
};

// Maps a non-2xx response to an Error (exported for the SSE path).
Error ErrorFromResponse(const http::Response& response);

// Percent-encodes a query or path component.
std::string UrlEncode(std::string_view text);

}  // namespace gpuq::cli
