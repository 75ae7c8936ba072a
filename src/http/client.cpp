#include "http/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <mutex>

namespace gpuq::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

template <class Message>
void CopyHeaders(const Message& msg, Response& out) {
  for (const auto& field : msg) {
    out.headers[Lower(std::string(field.name_string()))] = std::string(field.value());
  }
}

// The socket as Beast's SyncReadStream, each read waiting at most `timeout_ms` for data (-1: no
// limit). Asio's blocking reads ignore SO_RCVTIMEO: on EAGAIN they poll again without a limit.
struct PolledSocket {
  tcp::socket& socket;
  int timeout_ms;

  template <class MutableBuffers>
  size_t read_some(const MutableBuffers& buffers, beast::error_code& ec) {
    pollfd p{socket.native_handle(), POLLIN, 0};
    int n;
    do {
      n = ::poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      ec = asio::error::timed_out;
      return 0;
    }
    return socket.read_some(buffers, ec);
  }

  template <class MutableBuffers>
  size_t read_some(const MutableBuffers& buffers) {
    beast::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }
};
}  // namespace

struct Client::State {
  Endpoint endpoint;
  std::chrono::milliseconds timeout;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  std::map<std::string, std::string> headers;

  // Abort() from another thread: it may shut down `active_fd` only while holding the mutex, and
  // the socket is closed only after active_fd was cleared under it, so a descriptor number that
  // was closed and reused elsewhere is never shut down.
  std::atomic<bool> aborted{false};
  std::mutex abort_mutex;
  int active_fd = -1;

  std::string Where() const { return fmt::format("{}:{}", endpoint.host, endpoint.port); }

  Error Aborted() const {
    return Error{Errc::kUnavailable, fmt::format("request to {} aborted", Where())};
  }

  // false when Abort() came first: the caller must not use the socket.
  bool Track(int fd) {
    std::lock_guard lock(abort_mutex);
    if (aborted) return false;
    active_fd = fd;
    return true;
  }

  void ResetStream() {
    {
      std::lock_guard lock(abort_mutex);
      active_fd = -1;
    }
    stream.reset();
  }

  Result<void> Connect() {
    ResetStream();
    buffer.clear();
    if (aborted) return Aborted();
    tcp::resolver resolver(io);
    beast::error_code ec;
    auto results = resolver.resolve(endpoint.host, std::to_string(endpoint.port), ec);
    if (ec) return Error{Errc::kUnavailable, fmt::format("resolve {}: {}", Where(), ec.message())};
    stream.emplace(io);
    // Synchronous connect, one address at a time, each socket tracked first so that Abort()
    // can shut down a connect in progress too.
    ec = asio::error::host_not_found;
    for (const auto& entry : results) {
      auto& socket = stream->socket();
      beast::error_code ignored;
      socket.close(ignored);
      socket.open(entry.endpoint().protocol(), ec);
      if (ec) continue;
      if (!Track(socket.native_handle())) {
        ResetStream();
        return Aborted();
      }
      SetSocketTimeout();  // Linux bounds a blocking connect by SO_SNDTIMEO too
      socket.connect(entry.endpoint(), ec);
      if (!ec) break;
    }
    if (ec || aborted) {
      ResetStream();
      if (aborted) return Aborted();
      if (ec == asio::error::in_progress) {  // SO_SNDTIMEO ran out
        return Error{Errc::kTimeout, fmt::format("connect to {}: timed out", Where())};
      }
      return Error{Errc::kUnavailable,
                   fmt::format("cannot reach gpuq server at {}: {}", Where(), ec.message())};
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    SetSocketTimeout();
    return Ok();
  }

  // Blocking reads and writes honour SO_RCVTIMEO/SO_SNDTIMEO, our deadline per operation.
  void SetSocketTimeout() {
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    int fd = stream->socket().native_handle();
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  bhttp::request<bhttp::string_body> MakeRequest(std::string_view method, std::string_view target,
                                                 std::string_view body,
                                                 std::string_view content_type,
                                                 const std::map<std::string, std::string>& extra) {
    bhttp::request<bhttp::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(bhttp::field::host, Where());
    req.set(bhttp::field::user_agent, "gpuq");
    for (const auto& [k, v] : headers) req.set(k, v);
    for (const auto& [k, v] : extra) req.set(k, v);
    if (!content_type.empty()) req.set(bhttp::field::content_type, content_type);
    if (!body.empty() || method == "POST" || method == "PUT") {
      req.body() = std::string(body);
      req.prepare_payload();
    }
    return req;
  }

  static bool IsTimeout(const beast::error_code& ec) {
    return ec == asio::error::would_block || ec == asio::error::try_again ||
           ec == asio::error::timed_out || ec == beast::error::timeout;
  }

  Error IoError(const char* what, const beast::error_code& ec) {
    ResetStream();
    if (aborted) return Aborted();
    bool timed_out = IsTimeout(ec);
    return Error{timed_out ? Errc::kTimeout : Errc::kUnavailable,
                 fmt::format("{} {}: {}", what, Where(),
                             timed_out ? std::string("timed out") : ec.message())};
  }

  int read_timeout_ms = -1;  // of the stream OpenStream opened

  // Opens a connection of its own (streams never reuse one), sends `req` and reads the reply's
  // header into `parser`. Without a read deadline a read may block until the server speaks.
  Result<Response> OpenStream(const bhttp::request<bhttp::string_body>& req,
                              bhttp::response_parser<bhttp::buffer_body>& parser,
                              bool read_deadline) {
    BOOST_OUTCOME_TRY(Connect());
    read_timeout_ms = read_deadline ? static_cast<int>(timeout.count()) : -1;
    beast::error_code ec;
    bhttp::write(stream->socket(), req, ec);
    if (ec) return IoError("send to", ec);
    parser.body_limit(boost::none);
    PolledSocket socket{stream->socket(), read_timeout_ms};
    bhttp::read_header(socket, buffer, parser, ec);
    if (ec) return IoError("read from", ec);
    Response out;
    out.status = static_cast<int>(parser.get().result_int());
    CopyHeaders(parser.get(), out);
    return out;
  }

  // Reads the body after OpenStream, handing each piece to on_piece as soon as it arrived
  // (chunked encoding removed; any size) until the body is complete or on_piece returns false.
  // `received` counts the body bytes read. An error means the body did not end properly (cut
  // off, reset, timed out); a stop by on_piece is no error.
  beast::error_code ReadBody(bhttp::response_parser<bhttp::buffer_body>& parser,
                             const std::function<bool(std::string_view)>& on_piece,
                             size_t& received) {
    char chunk[16384];
    PolledSocket socket{stream->socket(), read_timeout_ms};
    beast::error_code ec;
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      // read_some returns as soon as some body arrived: the caller sees it live.
      bhttp::read_some(socket, buffer, parser, ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) return ec;
      size_t got = sizeof chunk - parser.get().body().size;
      received += got;
      if (got > 0 && !on_piece(std::string_view(chunk, got))) return {};
    }
    return {};
  }
};

Result<Endpoint> ParseServerUrl(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  if (rest.starts_with("https://")) {
    return Error{Errc::kInvalidArgument, fmt::format("https is not supported: {}", url)};
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  auto colon = rest.rfind(':');
  Endpoint ep;
  if (colon == std::string_view::npos) {
    if (rest.empty()) return Error{Errc::kInvalidArgument, fmt::format("bad server url '{}'", url)};
    ep.host = std::string(rest);
    ep.port = 80;
    return ep;
  }
  ep.host = std::string(rest.substr(0, colon));
  if (ep.host.starts_with('[') && ep.host.ends_with(']')) ep.host = ep.host.substr(1, ep.host.size() - 2);
  auto port_text = rest.substr(colon + 1);
  int port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) {
      return Error{Errc::kInvalidArgument, fmt::format("bad port in server url '{}'", url)};
    }
    port = port * 10 + (c - '0');
  }
  if (ep.host.empty() || port_text.empty() || port <= 0 || port > 65535) {
    return Error{Errc::kInvalidArgument, fmt::format("bad server url '{}'", url)};
  }
  ep.port = port;
  return ep;
}

Result<UrlTarget> ParseHttpUrl(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.find("://") != std::string_view::npos) {
    return Error{Errc::kInvalidArgument, fmt::format("not an http:// url: '{}'", url)};
  }
  auto slash = rest.find_first_of("/?");
  UrlTarget out;
  BOOST_OUTCOME_TRY(out.endpoint, ParseServerUrl(rest.substr(0, slash)));
  if (slash == std::string_view::npos) {
    out.target = "/";
  } else {
    out.target = std::string(rest.substr(slash));
    if (out.target.front() == '?') out.target.insert(0, "/");
  }
  return out;
}

Client::Client(Endpoint endpoint, std::chrono::milliseconds timeout)
    : state_(std::make_unique<State>()) {
  state_->endpoint = std::move(endpoint);
  state_->timeout = timeout;
}

Client::~Client() = default;

void Client::Abort() {
  auto& s = *state_;
  std::lock_guard lock(s.abort_mutex);
  s.aborted = true;
  // shutdown(), not close(): the descriptor stays owned by the requesting thread, and a blocked
  // connect, send or recv on it returns at once.
  if (s.active_fd >= 0) ::shutdown(s.active_fd, SHUT_RDWR);
}

void Client::SetHeader(std::string name, std::string value) {
  state_->headers[std::move(name)] = std::move(value);
}

Result<Response> Client::Request(std::string_view method, std::string_view target,
                                 std::string_view body, std::string_view content_type,
                                 const std::map<std::string, std::string>& headers) {
  auto& s = *state_;
  auto req = s.MakeRequest(method, target, body, content_type, headers);
  // A kept-alive connection may have been closed by the server: retry once on a fresh one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (s.aborted) return s.Aborted();
    bool reused = s.stream.has_value();
    if (!reused) {
      BOOST_OUTCOME_TRY(s.Connect());
    }
    beast::error_code ec;
    bhttp::write(s.stream->socket(), req, ec);
    if (ec) {
      if (reused) {
        s.ResetStream();
        continue;
      }
      return s.IoError("send to", ec);
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1ull << 31);
    // Each read waits at most the timeout (a server that accepts and then says nothing).
    PolledSocket socket{s.stream->socket(), static_cast<int>(s.timeout.count())};
    bhttp::read(socket, s.buffer, parser, ec);
    if (ec) {
      if (reused && (ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
                     ec == asio::error::eof)) {
        s.ResetStream();
        continue;
      }
      return s.IoError("read from", ec);
    }
    auto msg = parser.release();
    Response out;
    out.status = static_cast<int>(msg.result_int());
    CopyHeaders(msg, out);
    out.body = std::move(msg.body());
    if (!msg.keep_alive()) s.ResetStream();
    return out;
  }
  return Error{Errc::kUnavailable, fmt::format("connection to {} closed", s.Where())};
}

Result<Response> Client::Stream(std::string_view target,
                                const std::function<bool(std::string_view event,
                                                         std::string_view data)>& on_event) {
  auto& s = *state_;
  // No read deadline: events may be minutes apart.
  auto req = s.MakeRequest("GET", target, {}, {}, {{"Accept", "text/event-stream"}});
  bhttp::response_parser<bhttp::buffer_body> parser;
  BOOST_OUTCOME_TRY(auto out, s.OpenStream(req, parser, /*read_deadline=*/false));
  std::string pending;  // bytes not yet split into lines
  std::string data;     // the current event's data lines
  std::string event;    // the current event's name
  bool has_data = false;
  auto on_piece = [&](std::string_view piece) {
    if (out.status != 200) {
      out.body.append(piece);
      return true;
    }
    bool keep_going = true;
    pending.append(piece);
    size_t start = 0;
    for (size_t nl; keep_going && (nl = pending.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) {  // blank line: end of one event
        if (has_data) {
          data.pop_back();  // the last line's \n
          keep_going = on_event(event.empty() ? "message" : event, data);
        }
        data.clear();
        event.clear();
        has_data = false;
      } else if (line.starts_with("data:")) {
        line.remove_prefix(5);
        if (line.starts_with(' ')) line.remove_prefix(1);
        data.append(line);
        data.push_back('\n');
        has_data = true;
      } else if (line.starts_with("event:")) {
        line.remove_prefix(6);
        if (line.starts_with(' ')) line.remove_prefix(1);
        event = std::string(line);
      }
    }
    pending.erase(0, start);
    return keep_going;
  };
  size_t received = 0;
  s.ReadBody(parser, on_piece, received);  // a stream that ends early simply ends
  s.ResetStream();                         // a stream's connection is never reused
  if (s.aborted) return s.Aborted();
  return out;
}

Result<Response> Client::StreamBody(std::string_view method, std::string_view target,
                                    std::string_view body, std::string_view content_type,
                                    const std::function<bool(std::string_view data)>& on_data,
                                    const std::map<std::string, std::string>& headers) {
  auto& s = *state_;
  auto req = s.MakeRequest(method, target, body, content_type, headers);
  bhttp::response_parser<bhttp::buffer_body> parser;
  BOOST_OUTCOME_TRY(auto out, s.OpenStream(req, parser, /*read_deadline=*/true));
  bool success = out.status >= 200 && out.status < 300;
  auto on_piece = [&](std::string_view piece) {
    if (success) return on_data(piece);
    out.body.append(piece);
    return true;
  };
  size_t received = 0;
  auto ec = s.ReadBody(parser, on_piece, received);
  s.ResetStream();  // never reused: the server may still be sending after an early stop
  if (s.aborted) return s.Aborted();
  if (ec && State::IsTimeout(ec)) {
    return Error{Errc::kTimeout,
                 fmt::format("reply from {} stalled: nothing for {} ms after {} bytes", s.Where(),
                             s.timeout.count(), received)};
  }
  if (ec) {
    return Error{Errc::kUnavailable, fmt::format("reply cut off after {} bytes: {} (from {})",
                                                 received, ec.message(), s.Where())};
  }
  return out;
}

}  // namespace gpuq::http
