#pragma once
// A small blocking HTTP/1.1 client for the CLI, connectors, health checks, tests and benchmarks.
// Beast stays in client.cpp. Not thread-safe: one Client per thread, except Abort(). Keeps one
// connection alive and reconnects when the server closed it.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace gpuq::http {

struct Response {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 8000;
};

// "http://host:port" (or "host:port") -> Endpoint. kInvalidArgument otherwise.
Result<Endpoint> ParseServerUrl(std::string_view url);

// "http://host:port/path?query" -> the endpoint and the request target ("/path?query", "/" when
// the URL has no path). kInvalidArgument for another scheme or a bad authority.
struct UrlTarget {
  Endpoint endpoint;
  std::string target;
};
Result<UrlTarget> ParseHttpUrl(std::string_view url);

class Client {
 public:
  explicit Client(Endpoint endpoint, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Extra headers sent with every request ("Authorization": "Bearer ...").
  void SetHeader(std::string name, std::string value);

  // kUnavailable when the server cannot be reached, kTimeout past the deadline.
  // Any HTTP status is a successful Response.
  Result<Response> Request(std::string_view method, std::string_view target,
                           std::string_view body = {}, std::string_view content_type = {},
                           const std::map<std::string, std::string>& headers = {});
  Result<Response> Get(std::string_view target) { return Request("GET", target); }
  Result<Response> Post(std::string_view target, std::string_view json_body = "{}") {
    return Request("POST", target, json_body, "application/json");
  }

  // Reads a text/event-stream on a connection of its own: calls on_event with each event's
  // name ("message" unless the server set `event:`) and data (lines joined by \n) until the
  // server ends the stream or on_event returns false. Non-200 comes back as the Response
  // (body filled); a 200 stream returns the status with an empty body.
  Result<Response> Stream(
      std::string_view target,
      const std::function<bool(std::string_view event, std::string_view data)>& on_event);

  // Sends a request on a connection of its own and hands a 2xx reply's body to on_data as it
  // arrives (after chunked decoding; pieces of any size, not aligned to lines or samples).
  // on_data returns false to stop reading early (the connection is closed; no error). Returns
  // the status and headers with an empty body; a non-2xx reply's body is read whole into
  // Response.body instead and on_data is never called. A body that ends before it is complete
  // (a chunked stream without its terminating chunk, fewer bytes than Content-Length, a reset)
  // is kUnavailable "reply cut off after N bytes: ..."; silence longer than the timeout is
  // kTimeout; Abort() is kUnavailable "aborted".
  Result<Response> StreamBody(std::string_view method, std::string_view target,
                              std::string_view body, std::string_view content_type,
                              const std::function<bool(std::string_view data)>& on_data,
                              const std::map<std::string, std::string>& headers = {});

  // Thread-safe; callable from any thread (a std::stop_callback) while another thread is inside
  // Request() or Stream(). Shuts the connection down, so a blocked connect, send or receive
  // returns at once, and makes this call and every later one fail with kUnavailable "aborted".
  // Abort is final: use a new Client afterwards.
  void Abort();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gpuq::http
