// The listener and the sessions: one io_context per thread, each run by its own thread; the
// acceptor hands connections to them in turn, and a connection's coroutine stays on its
// io_context, so nothing of a session needs a strand or a lock. Routes never see Beast: they
// get a Request and return a Response, which this file writes (string body, streamed file, or
// chunked event stream).
#include "api/server.hpp"

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/auth.hpp"
#include "api/context.hpp"
#include "api/errors.hpp"
#include "api/routes.hpp"

namespace gpuq::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr auto kIdleTimeout = 60s;        // a keep-alive connection with no request is closed
constexpr auto kWriteTimeout = 60s;       // one response (or one SSE event) must go out in this
constexpr auto kLingerTimeout = 2s;       // after a 413: how long unread body bytes are drained
constexpr size_t kLingerBytes = 16u << 20;
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
// Blocking calls mostly wait on the store's group commit, not on a CPU: many threads, so many
// submits share one commit.
constexpr int kBlockingThreads = 32;

using HttpRequest = http::request<http::string_body>;

void CloseSocket(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream.socket().close(ec);
}

std::string_view HeaderLookup(const void* fields, std::string_view name) {
  const auto& request = *static_cast<const HttpRequest*>(fields);
  auto it = request.find(beast::string_view(name.data(), name.size()));
  if (it == request.end()) return {};
  auto value = it->value();
  return {value.data(), value.size()};
}

Method ToMethod(http::verb verb) {
  switch (verb) {
    case http::verb::get: return Method::kGet;
    case http::verb::post: return Method::kPost;
    default: return Method::kOther;
  }
}

bool IsHttpParseError(const beast::error_code& ec) {
  return ec.category() == beast::error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream;
}

// A crashed connection or accept loop is a bug: say so loudly and stop (STYLE.md).
auto CrashOnException(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& err) {
      spdlog::critical("api task crashed task={} what={}", what, err.what());
    } catch (...) {
      spdlog::critical("api task crashed task={}", what);
    }
    std::terminate();
  };
}

}  // namespace

// One io_context and its thread's connections. Only `io` is touched from other threads
// (post); the rest belongs to the thread running `io`, except during Run's setup.
struct Worker {
  std::unordered_set<beast::tcp_stream*> sessions;  // declared before `io`: sessions whose
                                                    // frames die with `io` unregister here
  asio::io_context io{1};
  // Keeps `io` running while it has no connection; reset by Stop on this worker's thread.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
};

struct Server::State {
  explicit State(ServerDeps d)
      : deps(d),
        workers(MakeFirstWorker()),
        acceptor(workers.front()->io),
        blocking(kBlockingThreads),
        run_cache(deps.store),
        context{deps.store,
                deps.config,
                deps.connectors,
                blocking,
                stopping,
                std::filesystem::absolute(deps.config.data_dir),
                deps.clock ? *deps.clock : system_clock,
                deps.gpu_command_timeout,
                run_cache},
        router(AllRoutes()) {}

  static std::vector<std::unique_ptr<Worker>> MakeFirstWorker() {
    std::vector<std::unique_ptr<Worker>> first;
    first.push_back(std::make_unique<Worker>());
    return first;
  }

  ServerDeps deps;
  SystemClock system_clock;  // when deps.clock is null; declared before `context`
  // [0] exists from the start (it runs the acceptor); Run adds the others. Grows only under
  // workers_mutex, before any io thread starts; read-only afterwards.
  std::vector<std::unique_ptr<Worker>> workers;
  std::mutex workers_mutex;
  tcp::acceptor acceptor;  // on workers[0]'s thread only
  size_t next_worker = 0;  // the accept loop's round-robin position
  std::atomic<bool> stopping{false};
  asio::thread_pool blocking;
  RunCache run_cache;
  ApiContext context;
  const Router router;

  asio::awaitable<void> Accept();
  asio::awaitable<void> Session(tcp::socket socket, Worker& worker);
  asio::awaitable<Response> Dispatch(const HttpRequest& request);
};

namespace {

// The per-connection writer. `scratch` is reused across responses to keep the hot path free
// of header allocations; string bodies go out as one gather write of head + body.
class Writer {
 public:
  explicit Writer(beast::tcp_stream& stream) : stream_(stream) {}

  asio::awaitable<bool> WriteRaw(std::string_view bytes) {
    stream_.expires_after(kWriteTimeout);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                                              kNoThrow);
    co_return !ec;
  }

  // Status line and headers, without the final blank line.
  void Head(int status, std::string_view content_type, bool keep_alive, unsigned version,
            const Response* response) {
    head_.clear();
    auto reason = http::obsolete_reason(static_cast<http::status>(status));
    fmt::format_to(std::back_inserter(head_), "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n", status,
                   std::string_view(reason.data(), reason.size()), content_type);
    if (response != nullptr) {
      for (const auto& [name, value] : response->headers) {
        fmt::format_to(std::back_inserter(head_), "{}: {}\r\n", name, value);
      }
    }
    if (!keep_alive) {
      head_ += "Connection: close\r\n";
    } else if (version < 11) {
      head_ += "Connection: keep-alive\r\n";
    }
  }

  asio::awaitable<bool> WriteString(const Response& response, bool keep_alive, unsigned version) {
    Head(response.status, response.content_type, keep_alive, version, &response);
    fmt::format_to(std::back_inserter(head_), "Content-Length: {}\r\n\r\n", response.body.size());
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(response.body)};
    stream_.expires_after(kWriteTimeout);
    auto [ec, n] = co_await asio::async_write(stream_, buffers, kNoThrow);
    co_return !ec;
  }

  // 200 text/event-stream, chunked; the body follows as ChunkedEventSink chunks.
  asio::awaitable<bool> WriteEventStreamHead(const Response& response, unsigned version) {
    Head(response.status, response.content_type, false, version, &response);
    head_ += "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";
    co_return co_await WriteRaw(head_);
  }

  // Streams the file from disk in small pieces (Beast's file_body), never all of it in memory.
  asio::awaitable<bool> WriteFile(const Response& response, bool keep_alive, unsigned version) {
    http::response<http::file_body> message{static_cast<http::status>(response.status), version};
    beast::error_code ec;
    message.body().open(response.file.c_str(), beast::file_mode::scan, ec);
    if (ec) {
      co_return co_await WriteString(
          ErrorResponse(404, "not_found", "the file could not be opened"), keep_alive, version);
    }
    message.set(http::field::content_type,
                beast::string_view(response.content_type.data(), response.content_type.size()));
    for (const auto& [name, value] : response.headers) message.set(name, value);
    message.keep_alive(keep_alive);
    message.prepare_payload();
    stream_.expires_after(kWriteTimeout);
    auto [write_ec, n] = co_await http::async_write(stream_, message, kNoThrow);
    co_return !write_ec;
  }

 private:
  beast::tcp_stream& stream_;
  std::string head_;
};

// Server-sent events over chunked transfer encoding; the connection closes afterwards.
class ChunkedEventSink final : public EventSink {
 public:
  ChunkedEventSink(Writer& writer, const std::atomic<bool>& stopping)
      : writer_(writer), stopping_(stopping) {}

  asio::awaitable<bool> Send(std::string_view text) override {
    if (stopping_ || broken_) co_return false;
    if (text.empty()) co_return true;
    chunk_.clear();
    fmt::format_to(std::back_inserter(chunk_), "{:x}\r\n", text.size());
    chunk_.append(text);
    chunk_ += "\r\n";
    broken_ = !co_await writer_.WriteRaw(chunk_);
    co_return !broken_;
  }
  bool Stopping() const override { return stopping_; }
  bool broken() const { return broken_; }

 private:
  Writer& writer_;
  const std::atomic<bool>& stopping_;
  std::string chunk_;
  bool broken_ = false;
};

// After refusing a body unread: stop sending, then read and drop what the client still sends
// (for a while), so closing does not reset the connection before it has read our answer.
asio::awaitable<void> LingeringClose(beast::tcp_stream& stream, beast::flat_buffer& buffer) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  size_t drained = 0;
  stream.expires_after(kLingerTimeout);
  char sink[16 * 1024];
  while (drained < kLingerBytes) {
    auto [read_ec, n] = co_await stream.async_read_some(asio::buffer(sink), kNoThrow);
    if (read_ec) break;
    drained += n;
  }
  buffer.clear();
}

}  // namespace

asio::awaitable<Response> Server::State::Dispatch(const HttpRequest& message) {
  Request request;
  request.method = ToMethod(message.method());
  std::string_view target(message.target().data(), message.target().size());
  size_t question = target.find('?');
  request.path = target.substr(0, question);
  if (question != std::string_view::npos) request.query = target.substr(question + 1);
  request.body = message.body();
  request.fields = &message;
  request.header_fn = &HeaderLookup;

  const std::string& token = deps.config.server.token;
  if (!token.empty() && request.path != "/health" &&
      !Authorized(token, request.Header("Authorization"), request.Header("Cookie"))) {
    Response response = ErrorResponse(
        401, "unauthenticated",
        "this server needs a token: send Authorization: Bearer <token> or the gpuq_token cookie");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    co_return response;
  }

  Router::Match match = router.Find(request.method, request.path);
  if (match.handler == nullptr) {
    if (match.path_known) {
      Response response = ErrorResponse(
          405, "method_not_allowed",
          fmt::format("{} does not take {}; it takes {}", request.path,
                      std::string_view(message.method_string().data(),
                                       message.method_string().size()),
                      match.allow));
      response.headers.emplace_back("Allow", std::string(match.allow));
      co_return response;
    }
    co_return ErrorResponse(404, "not_found", "no such route; see /openapi.json");
  }

  // Handlers return errors as values; an exception here is a bug in one request, not in the
  // server, so it becomes a 500 for that request.
  try {
    co_return co_await match.handler(context, request, match.params);
  } catch (const std::exception& e) {
    spdlog::error("api handler threw path={} what={}", request.path, e.what());
  }
  co_return ErrorResponse(500, "internal", "the server failed to handle this request");
}

asio::awaitable<void> Server::State::Session(tcp::socket socket, Worker& worker) {
  beast::tcp_stream stream(std::move(socket));
  // Runs on this worker's thread, as Stop's close does; a session that starts after that close
  // sees `stopping` (set before the close was posted) and ends at once.
  if (stopping) co_return;
  worker.sessions.insert(&stream);
  struct Unregister {
    Worker& worker;
    beast::tcp_stream* stream;
    ~Unregister() { worker.sessions.erase(stream); }
  } unregister{worker, &stream};

  const size_t max_body = deps.config.server.max_body_bytes;
  beast::flat_buffer buffer;
  Writer writer(stream);
  while (!stopping) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    // No limit while the header is read, or Beast would fail it on Content-Length alone; the
    // length is checked below and the limit set before the body is read.
    parser.body_limit(boost::none);
    stream.expires_after(kIdleTimeout);
    auto [header_ec, header_n] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
    if (header_ec) {
      if (header_ec == http::error::header_limit) {
        co_await writer.WriteString(
            ErrorResponse(431, "header_too_large", "the request headers are too large"), false,
            11);
      } else if (IsHttpParseError(header_ec)) {
        co_await writer.WriteString(
            ErrorResponse(400, "malformed_request", "the request is not valid HTTP/1.1"), false,
            11);
      }
      break;
    }
    const unsigned version = parser.get().version();
    // Refuse an oversized body from its Content-Length, before reading any of it.
    if (auto length = parser.content_length(); length && *length > max_body) {
      co_await writer.WriteString(
          ErrorResponse(413, "too_large",
                        fmt::format("the body is {} bytes; the limit is {}", *length, max_body)),
          false, version);
      co_await LingeringClose(stream, buffer);
      break;
    }
    parser.body_limit(max_body);  // also bounds chunked bodies, which have no Content-Length
    if (!parser.is_done()) {
      if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        if (!co_await writer.WriteRaw("HTTP/1.1 100 Continue\r\n\r\n")) break;
      }
      auto [body_ec, body_n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
      if (body_ec == http::error::body_limit) {  // chunked bodies have no Content-Length
        co_await writer.WriteString(
            ErrorResponse(413, "too_large", fmt::format("the body exceeds {} bytes", max_body)),
            false, version);
        co_await LingeringClose(stream, buffer);
        break;
      }
      if (body_ec) {
        if (IsHttpParseError(body_ec)) {
          co_await writer.WriteString(
              ErrorResponse(400, "malformed_request", "the request body is not valid HTTP"),
              false, version);
        }
        break;
      }
    }

    const HttpRequest& request = parser.get();
    Response response = co_await Dispatch(request);
    bool keep_alive = request.keep_alive() && !stopping && !response.events;
    bool written = false;
    if (response.events) {
      if (co_await writer.WriteEventStreamHead(response, version)) {
        ChunkedEventSink sink(writer, stopping);
        co_await response.events(sink);
        if (!sink.broken()) co_await writer.WriteRaw("0\r\n\r\n");
      }
      written = false;  // an event stream always ends the connection
    } else if (!response.file.empty()) {
      written = co_await writer.WriteFile(response, keep_alive, version);
    } else {
      written = co_await writer.WriteString(response, keep_alive, version);
    }
    if (!written || !keep_alive) break;
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> Server::State::Accept() {
  while (!stopping) {
    Worker& worker = *workers[next_worker++ % workers.size()];
    auto [ec, socket] = co_await acceptor.async_accept(worker.io, kNoThrow);
    if (stopping || ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors and similar: back off a little instead of spinning.
      spdlog::warn("api accept failed error={}", ec.message());
      asio::steady_timer timer(acceptor.get_executor(), 50ms);
      co_await timer.async_wait(kNoThrow);
      continue;
    }
    beast::error_code opt_ec;
    socket.set_option(tcp::no_delay(true), opt_ec);
    asio::co_spawn(worker.io, Session(std::move(socket), worker), CrashOnException("api session"));
  }
}

Server::Server(ServerDeps deps) : state_(std::make_unique<State>(deps)) {}

Server::~Server() {
  Stop();
  // Blocking calls in flight finish first; their completions then die with the io_context.
  state_->blocking.join();
}

Result<int> Server::Listen(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return Error{Errc::kInvalidArgument, fmt::format("port {} is out of range", port)};
  }
  const bool has_token = !state_->deps.config.server.token.empty();
  std::string name = host;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);  // "[::1]"
  }
  auto refuse = [&] {
    return Error{Errc::kInvalidArgument,
                 fmt::format("refusing to listen on {} without a token: set --token or GPUQ_TOKEN",
                             host)};
  };
  beast::error_code ec;
  asio::ip::address address;
  if (name == "localhost") {
    address = asio::ip::address_v4::loopback();
  } else {
    address = asio::ip::make_address(name, ec);
    if (ec) {
      // A host name: only with a token, since what it resolves to may change.
      if (!has_token) return refuse();
      tcp::resolver resolver(state_->workers.front()->io);
      auto results = resolver.resolve(name, std::to_string(port), ec);
      if (ec || results.empty()) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("cannot resolve {}: {}", host, ec ? ec.message() : "no address")};
      }
      address = results.begin()->endpoint().address();
    }
  }
  if (!has_token && !address.is_loopback()) return refuse();

  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  tcp::acceptor& acceptor = state_->acceptor;
  auto fail = [&](const char* step) {
    beast::error_code ignored;
    acceptor.close(ignored);
    return Error{Errc::kUnavailable, fmt::format("{} {}:{}: {}", step, host, port, ec.message())};
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("configure");
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  int bound = acceptor.local_endpoint(ec).port();
  if (ec) return fail("read the address of");
  spdlog::info("api listening host={} port={}", host, bound);
  return bound;
}

void Server::Run(int threads) {
  State& state = *state_;
  // Half the cores by default: io threads only parse, route and answer (writes wait on the
  // store's writer thread, scans on the blocking pool), and the rest of the box belongs to the
  // agent and the services it runs. Each connection stays on one thread, so a thread that the
  // scheduler preempts stalls its connections: more threads than spare cores lengthens the
  // tail (measured: p99 7.9 ms with 2 threads, 2.5 ms with 1, on 2 cores beside wrk).
  if (threads <= 0) {
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
  }
  {
    std::lock_guard lock(state.workers_mutex);
    if (state.stopping) return;
    while (state.workers.size() < static_cast<size_t>(threads)) {
      state.workers.push_back(std::make_unique<Worker>());
    }
    for (auto& worker : state.workers) worker->keep_running.emplace(worker->io.get_executor());
  }
  if (state.acceptor.is_open()) {
    asio::co_spawn(state.acceptor.get_executor(), state.Accept(), CrashOnException("api accept"));
  }
  // Each io_context::run returns once Stop has dropped its keep_running and its last session
  // (and any submit it waits for) has ended.
  std::vector<std::thread> extra;
  extra.reserve(state.workers.size() - 1);
  for (size_t i = 1; i < state.workers.size(); ++i) {
    extra.emplace_back([&io = state.workers[i]->io] { io.run(); });
  }
  state.workers.front()->io.run();
  for (auto& thread : extra) thread.join();
}

void Server::Stop() {
  State& state = *state_;
  std::lock_guard lock(state.workers_mutex);
  if (state.stopping.exchange(true)) return;
  asio::post(state.acceptor.get_executor(), [&state] {
    beast::error_code ec;
    state.acceptor.close(ec);
  });
  for (auto& worker : state.workers) {
    asio::post(worker->io, [&worker = *worker] {
      for (beast::tcp_stream* stream : worker.sessions) CloseSocket(*stream);
      worker.keep_running.reset();
    });
  }
}

}  // namespace gpuq::api
