#include "load/conn.hpp"

#include <chrono>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace gpuq::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr auto kTimeout = std::chrono::seconds(30);
}  // namespace

struct Conn::State {
  asio::any_io_executor executor;
  tcp::endpoint endpoint;
  std::string host_header;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

Conn::Conn(asio::any_io_executor executor, std::string host, int port)
    : state_(std::make_unique<State>()) {
  state_->executor = executor;
  state_->endpoint = tcp::endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port));
  state_->host_header = host + ":" + std::to_string(port);
}

Conn::~Conn() = default;

asio::awaitable<Reply> Conn::Request(std::string method, std::string target, std::string body) {
  State& s = *state_;
  Reply reply;
  if (!s.stream) {
    s.stream.emplace(s.executor);
    s.buffer.clear();
    s.stream->expires_after(kTimeout);
    auto [ec] = co_await s.stream->async_connect(s.endpoint, kNoThrow);
    if (ec) {
      s.stream.reset();
      reply.error = "connect: " + ec.message();
      co_return reply;
    }
    s.stream->socket().set_option(tcp::no_delay(true));
  }

  http::request<http::string_body> request{http::string_to_verb(method), target, 11};
  request.set(http::field::host, s.host_header);
  if (!body.empty()) {
    request.set(http::field::content_type, "application/json");
    request.body() = std::move(body);
  }
  request.prepare_payload();
  s.stream->expires_after(kTimeout);
  auto [write_ec, written] = co_await http::async_write(*s.stream, request, kNoThrow);
  if (write_ec) {
    s.stream.reset();
    reply.error = "write: " + write_ec.message();
    co_return reply;
  }
  http::response<http::string_body> response;
  auto [read_ec, read] = co_await http::async_read(*s.stream, s.buffer, response, kNoThrow);
  if (read_ec) {
    s.stream.reset();
    reply.error = "read: " + read_ec.message();
    co_return reply;
  }
  reply.status = static_cast<int>(response.result_int());
  reply.body = std::move(response.body());
  if (!response.keep_alive()) s.stream.reset();
  co_return reply;
}

}  // namespace gpuq::bench
