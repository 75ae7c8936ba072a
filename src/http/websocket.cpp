#include "http/websocket.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <optional>

namespace gpuq::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

namespace {
constexpr std::uint64_t kMessageMax = 256ull << 20;  // ComfyUI previews are a few MB
constexpr std::chrono::seconds kSendTimeout{30};
}  // namespace

// Every operation is asynchronous on an io_context of our own, run by the calling thread for at
// most its deadline. A Read that times out leaves its async_read outstanding (cancelling a
// websocket read mid-frame would break the stream); the next Read goes on waiting for it, so no
// partial message is lost.
struct WebSocket::State {
  std::string where;
  asio::io_context io;
  websocket::stream<tcp::socket> ws{io};

  bool reading = false;  // an async_read is outstanding
  std::optional<beast::error_code> read_done;  // it completed, with this status
  beast::flat_buffer message;
  std::optional<Error> broken;  // the stream failed: every later call returns this

  // Abort() from another thread may shut down `fd` only under the mutex; the socket is closed
  // only after fd was cleared under it (as in Client).
  std::atomic<bool> aborted{false};
  std::mutex abort_mutex;
  int fd = -1;

  ~State() {
    Untrack();
    // Completes a read left outstanding (with an error) while everything it refers to exists.
    beast::error_code ignored;
    beast::get_lowest_layer(ws).close(ignored);
    io.restart();
    io.run();
  }

  void Untrack() {
    std::lock_guard lock(abort_mutex);
    fd = -1;
  }

  Error Aborted() const {
    return Error{Errc::kUnavailable, fmt::format("websocket to {} aborted", where)};
  }

  // Runs the io_context until `done()` or the deadline; false when the deadline passed.
  template <class Done>
  bool RunUntil(Done done, std::chrono::steady_clock::time_point deadline) {
    while (!done()) {
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      io.restart();
      io.run_one_for(deadline - now);
    }
    return true;
  }

  Error Broke(const beast::error_code& ec) {
    if (aborted) return Aborted();
    if (ec == websocket::error::closed) {
      auto reason = ws.reason();
      std::string text = reason.reason.empty() ? std::string("no reason given")
                                               : std::string(reason.reason.c_str());
      broken = Error{Errc::kUnavailable,
                     fmt::format("closed by server: {} (code {}, {})", text,
                                 static_cast<int>(reason.code), where)};
    } else if (ec == asio::error::connection_reset) {
      broken = Error{Errc::kUnavailable, fmt::format("connection reset ({})", where)};
    } else {
      broken = Error{Errc::kUnavailable,
                     fmt::format("websocket to {} broke: {}", where, ec.message())};
    }
    return *broken;
  }
};

WebSocket::WebSocket() : state_(std::make_unique<State>()) {}

WebSocket::~WebSocket() = default;

Result<std::unique_ptr<WebSocket>> WebSocket::Connect(const Endpoint& endpoint,
                                                      std::string_view target,
                                                      std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_ptr<WebSocket> out(new WebSocket());
  auto& s = *out->state_;
  s.where = fmt::format("{}:{}{}", endpoint.host, endpoint.port, target);
  beast::error_code ec;
  tcp::resolver resolver(s.io);
  auto results = resolver.resolve(endpoint.host, std::to_string(endpoint.port), ec);
  if (ec) return Error{Errc::kUnavailable, fmt::format("resolve {}: {}", s.where, ec.message())};

  // Gives up an operation still in flight at the deadline: its handler runs with an error.
  auto give_up = [&](std::string_view what) {
    beast::error_code ignored;
    beast::get_lowest_layer(s.ws).close(ignored);
    s.io.restart();
    s.io.run();
    return Error{Errc::kTimeout, fmt::format("websocket {} {}: timed out after {} ms", what,
                                             s.where, timeout.count())};
  };

  std::optional<beast::error_code> connected;
  asio::async_connect(beast::get_lowest_layer(s.ws), results,
                      [&](beast::error_code e, const tcp::endpoint&) { connected = e; });
  if (!s.RunUntil([&] { return connected.has_value(); }, deadline)) return give_up("connect to");
  if (*connected) {
    return Error{Errc::kUnavailable,
                 fmt::format("cannot reach {}: {}", s.where, connected->message())};
  }
  beast::get_lowest_layer(s.ws).set_option(tcp::no_delay(true), ec);

  s.ws.read_message_max(kMessageMax);
  s.ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
    req.set(beast::http::field::user_agent, "gpuq");
  }));
  websocket::response_type response;
  std::optional<beast::error_code> shaken;
  s.ws.async_handshake(response, fmt::format("{}:{}", endpoint.host, endpoint.port),
                       std::string(target), [&](beast::error_code e) { shaken = e; });
  if (!s.RunUntil([&] { return shaken.has_value(); }, deadline)) return give_up("handshake with");
  if (*shaken == websocket::error::upgrade_declined) {
    return Error{Errc::kUnavailable,
                 fmt::format("websocket upgrade refused by {}: HTTP {} {}", s.where,
                             response.result_int(), std::string(response.reason()))};
  }
  if (*shaken) {
    return Error{Errc::kUnavailable,
                 fmt::format("websocket handshake with {}: {}", s.where, shaken->message())};
  }
  {
    std::lock_guard lock(s.abort_mutex);
    s.fd = beast::get_lowest_layer(s.ws).native_handle();
  }
  return out;
}

Result<WsMessage> WebSocket::Read(std::chrono::milliseconds timeout) {
  auto& s = *state_;
  if (s.aborted) return s.Aborted();
  if (s.broken) return *s.broken;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // A read may be outstanding from an earlier Read that timed out, or have completed meanwhile
  // (during Send): its message is the next one.
  if (!s.reading && !s.read_done) {
    s.reading = true;
    s.ws.async_read(s.message, [&s](beast::error_code e, std::size_t) {
      s.reading = false;
      s.read_done = e;
    });
  }
  if (!s.RunUntil([&] { return s.read_done.has_value(); }, deadline)) {
    if (s.aborted) return s.Aborted();
    return Error{Errc::kTimeout, fmt::format("no websocket message from {} in {} ms", s.where,
                                             timeout.count())};
  }
  auto ec = *s.read_done;
  s.read_done.reset();
  if (s.aborted) return s.Aborted();
  if (ec) return s.Broke(ec);
  WsMessage out;
  out.binary = s.ws.got_binary();
  out.data = beast::buffers_to_string(s.message.data());
  s.message.clear();
  return out;
}

Result<void> WebSocket::Send(std::string_view text) {
  auto& s = *state_;
  if (s.aborted) return s.Aborted();
  if (s.broken) return *s.broken;
  s.ws.text(true);
  std::optional<beast::error_code> sent;
  s.ws.async_write(asio::buffer(text.data(), text.size()),
                   [&sent](beast::error_code e, std::size_t) { sent = e; });
  // A read left outstanding by Read() may complete meanwhile: its result waits in read_done.
  bool done = s.RunUntil([&] { return sent.has_value(); },
                         std::chrono::steady_clock::now() + kSendTimeout);
  if (!done) {
    // The server stopped reading: the stream is unusable now; the handler completes with an
    // error once the socket is shut down.
    {
      std::lock_guard lock(s.abort_mutex);
      if (s.fd >= 0) ::shutdown(s.fd, SHUT_RDWR);
    }
    s.RunUntil([&] { return sent.has_value(); }, std::chrono::steady_clock::now() + kSendTimeout);
    if (s.aborted) return s.Aborted();
    s.broken = Error{Errc::kUnavailable, fmt::format("websocket send to {}: timed out", s.where)};
    return *s.broken;
  }
  if (s.aborted) return s.Aborted();
  if (*sent) return s.Broke(*sent);
  return Ok();
}

void WebSocket::Abort() {
  auto& s = *state_;
  std::lock_guard lock(s.abort_mutex);
  s.aborted = true;
  // shutdown(), not close(): the descriptor stays owned by the reading thread, whose blocked
  // operation completes at once with an error.
  if (s.fd >= 0) ::shutdown(s.fd, SHUT_RDWR);
}

}  // namespace gpuq::http
