#pragma once
// The server's view of one HTTP exchange, free of Beast: routes read a Request and return a
// Response; server.cpp turns it into bytes (a string body, a streamed file or an event stream).
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace gpuq::api {

enum class Method { kGet, kPost, kOther };

// Borrowed views into the session's parsed request. The session keeps the request alive until
// the response has been written, so a coroutine handler may use them across suspensions; a
// Response::events producer outlives that and must copy what it needs.
struct Request {
  Method method = Method::kOther;
  std::string_view path;   // "/runs/abc", before '?', not percent-decoded
  std::string_view query;  // after '?', empty when none
  std::string_view body;
  // Header lookup by case-insensitive name; empty when absent.
  std::string_view (*header_fn)(const void* fields, std::string_view name) = nullptr;
  const void* fields = nullptr;

  std::string_view Header(std::string_view name) const {
    return header_fn ? header_fn(fields, name) : std::string_view();
  }
};

// Writes a server-sent event stream. Implemented by the session (chunked transfer encoding).
class EventSink {
 public:
  virtual ~EventSink() = default;
  // Sends raw event-stream text ("data: x\n\n"). False once the client is gone or the server
  // stops; the producer should then return.
  virtual boost::asio::awaitable<bool> Send(std::string_view text) = 0;
  // True once Server::Stop() was called: a producer that waits must return soon after.
  virtual bool Stopping() const = 0;
};

struct Response {
  int status = 200;
  std::string_view content_type = "application/json";  // static strings only
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones ("Allow")
  // When set, the body is this file, streamed (body is ignored).
  std::filesystem::path file;
  // When set, the response is a text/event-stream produced by this coroutine; the connection
  // closes after it returns.
  std::function<boost::asio::awaitable<void>(EventSink&)> events;
};

// A JSON response from an already serialised body.
inline Response JsonResponse(std::string body, int status = 200) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace gpuq::api
