#pragma once
// A loopback HTTP + WebSocket server for the http client tests: one thread accepts, one thread
// per connection; the request target picks the behaviour (see Serve and ServeWs). Raw writes
// for the HTTP replies, so a reply can be cut anywhere.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/wait.hpp"

namespace gpuq::http::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

inline constexpr size_t kBigBinary = 5u << 20;  // a 5 MB binary message

class TestServer {
 public:
  TestServer() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes the blocked accept
    accept_thread_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);  // wakes connections that stall
    }
    for (auto& t : threads_) t.join();
  }

  int port() const { return port_; }

  // /chunks waits for this before each further piece, so a test can prove it saw a piece live.
  std::atomic<int> pieces_seen{0};
  std::atomic<bool> gate_timed_out{false};
  // /ws/half sent the rest of its frame and its answer.
  std::atomic<bool> half_done{false};

 private:
  void AcceptLoop() {
    while (!stopping_) {
      beast::error_code ec;
      tcp::socket socket(io_);
      acceptor_.accept(socket, ec);
      if (ec) return;
      std::lock_guard lock(mutex_);
      fds_.push_back(socket.native_handle());
      threads_.emplace_back([this, s = std::move(socket)]() mutable {
        Serve(s);
        Forget(s);  // before the socket closes, so the destructor never shuts a reused number
      });
    }
  }

  void Forget(tcp::socket& socket) {
    std::lock_guard lock(mutex_);
    std::erase(fds_, socket.native_handle());
  }

  static void Write(tcp::socket& socket, std::string_view text) {
    beast::error_code ec;
    asio::write(socket, asio::buffer(text.data(), text.size()), ec);
  }

  static std::string Chunk(std::string_view data) {
    return fmt::format("{:x}\r\n{}\r\n", data.size(), data);
  }

  // Blocks until the client goes away (or the server stops).
  static void WaitForClose(tcp::socket& socket) {
    char byte[256];
    beast::error_code ec;
    while (!ec) socket.read_some(asio::buffer(byte), ec);
  }

  void Gate(int seen) {
    if (!gpuq::testing::WaitUntil([&] { return pieces_seen >= seen || stopping_; },
                                  std::chrono::seconds(20))) {
      gate_timed_out = true;
    }
  }

  void Serve(tcp::socket& socket) {
    beast::flat_buffer buffer;
    bhttp::request<bhttp::string_body> req;
    beast::error_code ec;
    bhttp::read(socket, buffer, req, ec);
    if (ec) return;
    std::string target(req.target());
    target = target.substr(0, target.find('?'));
    if (websocket::is_upgrade(req)) {
      if (target == "/ws/stall-handshake") return WaitForClose(socket);
      if (target.starts_with("/ws/")) return ServeWs(socket, req, target);
      Write(socket,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
      return WaitForClose(socket);
    }
    const char* chunked = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n";
    if (target == "/chunks") {  // three pieces, each sent only after the client saw the last
      Write(socket, std::string(chunked) + Chunk("alpha"));
      Gate(1);
      Write(socket, Chunk("beta"));
      Gate(2);
      Write(socket, Chunk("gamma") + "0\r\n\r\n");
      return WaitForClose(socket);
    }
    if (target == "/echo") {  // echoes the request body and its method, Content-Length framed
      std::string body = std::string(req.method_string()) + " " + req.body();
      Write(socket, fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", body.size(),
                                body));
      return WaitForClose(socket);
    }
    if (target == "/cut-chunked") {  // no terminating chunk, then close
      Write(socket, std::string(chunked) + Chunk("hello") + Chunk("world"));
      return;
    }
    if (target == "/short") {  // promises 100 bytes, sends 10, then closes
      Write(socket, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
      return;
    }
    if (target == "/reset") {  // a reset after three bytes
      Write(socket, std::string(chunked) + Chunk("abc"));
      Gate(1);  // the client read it: a reset may discard data not yet read
      socket.set_option(asio::socket_base::linger(true, 0), ec);
      Forget(socket);
      socket.close(ec);
      return;
    }
    if (target == "/error") {
      std::string body = R"({"error":"model exploded"})";
      Write(socket, fmt::format("HTTP/1.1 500 Internal Server Error\r\nContent-Type: "
                                "application/json\r\nContent-Length: {}\r\n\r\n{}",
                                body.size(), body));
      return WaitForClose(socket);
    }
    if (target == "/big") {  // 4 MB, Content-Length framed
      std::string body(4u << 20, 'b');
      Write(socket, fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.size()));
      Write(socket, body);
      return WaitForClose(socket);
    }
    if (target == "/sse") {  // two events split across chunks, then the end
      Write(socket, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n" +
                        Chunk("event: progress\ndata: {\"a\":") + Chunk("1}\n\ndata: x\n") +
                        Chunk("data: y\n\n") + "0\r\n\r\n");
      return WaitForClose(socket);
    }
    if (target == "/silent") {  // the request is read, then nothing at all
      return WaitForClose(socket);
    }
    if (target == "/stall") {  // one piece, then silence
      Write(socket, std::string(chunked) + Chunk("x"));
      return WaitForClose(socket);
    }
    Write(socket, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    WaitForClose(socket);
  }

  void ServeWs(tcp::socket& socket, const bhttp::request<bhttp::string_body>& req,
               const std::string& target) {
    websocket::stream<tcp::socket&> ws(socket);
    beast::error_code ec;
    ws.accept(req, ec);
    if (ec) return;
    beast::flat_buffer in;
    if (target == "/ws/messages") {
      // text, a 5 MB binary, a text in two fragments, an echo of the client's message, close.
      ws.text(true);
      ws.write(asio::buffer(std::string("hello")), ec);
      std::string big(kBigBinary, '\0');
      for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
      ws.binary(true);
      ws.write(asio::buffer(big), ec);
      ws.text(true);
      ws.write_some(false, asio::buffer(std::string("frag")), ec);
      ws.write_some(true, asio::buffer(std::string("mented")), ec);
      ws.read(in, ec);
      if (ec) return;
      ws.text(true);
      ws.write(asio::buffer("echo:" + beast::buffers_to_string(in.data())), ec);
      ws.close(websocket::close_reason(websocket::close_code::normal, "bye now"), ec);
      while (!ec) ws.read(in, ec);  // until the client answers the close
      return;
    }
    if (target == "/ws/half") {
      // Half of a 10-byte text frame, the rest after the client sent a message.
      std::string head = "\x81\x0ahello";
      Write(ws.next_layer(), head);
      ws.read(in, ec);
      if (ec) return;
      Write(ws.next_layer(), "world");
      ws.text(true);
      ws.write(asio::buffer(std::string("got:") + beast::buffers_to_string(in.data())), ec);
      half_done = true;
      while (!ec) ws.read(in, ec);
      return;
    }
    if (target == "/ws/drop") {  // one message, then the TCP connection ends without a close
      ws.text(true);
      ws.write(asio::buffer(std::string("last")), ec);
      ws.next_layer().shutdown(tcp::socket::shutdown_both, ec);
      return;
    }
    // /ws/stall: silence until the client goes away.
    while (!ec) ws.read(in, ec);
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::mutex mutex_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

}  // namespace gpuq::http::testing
