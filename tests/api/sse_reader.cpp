#include "api/sse_reader.hpp"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

namespace gpuq::api::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

StreamResult ReadEventStream(int port, const std::string& target,
                             const std::function<bool(std::string_view, std::string_view)>& on_event) {
  StreamResult result{.status = -1};
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  beast::error_code ec;
  socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  if (ec) return result;
  timeval tv{.tv_sec = 60, .tv_usec = 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::accept, "text/event-stream");
  http::write(socket, request, ec);
  if (ec) return result;

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  http::read_header(socket, buffer, parser, ec);
  if (ec) return result;
  result.status = static_cast<int>(parser.get().result_int());

  std::string pending, event, data;
  bool has_data = false;
  char chunk[4096];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    http::read_some(socket, buffer, parser, ec);  // returns as soon as some body arrived
    if (ec == http::error::need_buffer) ec = {};
    if (ec) break;
    size_t got = sizeof chunk - parser.get().body().size;
    if (result.status != 200) {
      result.body.append(chunk, got);
      continue;
    }
    pending.append(chunk, got);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (line.empty()) {
        if (has_data && !on_event(event.empty() ? "message" : event, data)) return result;
        event.clear();
        data.clear();
        has_data = false;
      } else if (line.starts_with("data: ")) {
        if (has_data) data += '\n';
        data.append(line.substr(6));
        has_data = true;
      } else if (line.starts_with("event: ")) {
        event = std::string(line.substr(7));
      }
    }
    pending.erase(0, start);
  }
  return result;
}

}  // namespace gpuq::api::testing
