#include <fmt/format.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdio>

#include "testing/fake_service/fake_server.hpp"

namespace gpuq::fake {

void Log(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string FormDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string_view Exchange::Path() const {
  std::string_view target = request.target();
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  return target;
}

std::string Exchange::Method() const { return std::string(request.method_string()); }

std::optional<std::string> Exchange::Query(std::string_view key) const {
  std::string_view target = request.target();
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    auto eq = pair.find('=');
    if (FormDecode(pair.substr(0, eq)) != key) continue;
    return eq == std::string_view::npos ? std::string() : FormDecode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

Json Exchange::BodyJson() const { return Json::parse(request.body(), nullptr, false); }

void Exchange::Reply(bhttp::status status, const Json& body) {
  Reply(status, body.dump(), "application/json");
}

void Exchange::Reply(bhttp::status status, std::string body, std::string_view content_type) {
  bhttp::response<bhttp::string_body> res{status, request.version()};
  if (!content_type.empty()) res.set(bhttp::field::content_type, content_type);
  res.keep_alive(request.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  beast::error_code ec;
  bhttp::write(socket, res, ec);
  status_sent = static_cast<int>(status);
  if (ec || !res.keep_alive()) done = true;
}

void Exchange::ReplyEmpty(bhttp::status status) { Reply(status, std::string(), ""); }

bool Exchange::StartChunked(bhttp::status status, std::string_view content_type) {
  bhttp::response<bhttp::empty_body> res{status, request.version()};
  if (!content_type.empty()) res.set(bhttp::field::content_type, content_type);
  res.chunked(true);
  res.keep_alive(request.keep_alive());
  bhttp::response_serializer<bhttp::empty_body> serializer{res};
  beast::error_code ec;
  bhttp::write_header(socket, serializer, ec);
  status_sent = static_cast<int>(status);
  if (ec) done = true;
  return !ec;
}

bool Exchange::Chunk(std::string_view data) {
  if (done) return false;
  if (data.empty()) return true;  // an empty chunk would end the body
  beast::error_code ec;
  boost::asio::write(socket, bhttp::make_chunk(boost::asio::const_buffer(data.data(), data.size())),
                     ec);
  if (ec) done = true;
  return !ec;
}

void Exchange::EndChunked() {
  if (done) return;
  beast::error_code ec;
  boost::asio::write(socket, bhttp::make_chunk_last(), ec);
  if (ec || !request.keep_alive()) done = true;
}

void Exchange::Drop() {
  beast::error_code ec;
  // RST rather than FIN: the client sees a connection reset, as when a server process dies.
  socket.set_option(boost::asio::socket_base::linger(true, 0), ec);
  socket.close(ec);
  done = true;
}

}  // namespace gpuq::fake
