#pragma once
// A keep-alive HTTP/1.1 client connection for the load generators in bench/: one request at
// a time, awaited from an Asio coroutine. Beast stays in conn.cpp.
// Not thread-safe: use a Conn from the coroutines of one executor (one io_context thread).
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace gpuq::bench {

struct Reply {
  int status = 0;     // 0 when the exchange failed at the socket level
  std::string body;
  std::string error;  // set when status is 0: "connect: Connection refused", ...
};

class Conn {
 public:
  Conn(boost::asio::any_io_executor executor, std::string host, int port);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Connects on first use. A socket error comes back as Reply::error (no retry: a load
  // generator must count failures, not hide them); the next call reconnects.
  boost::asio::awaitable<Reply> Request(std::string method, std::string target,
                                        std::string body = {});

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gpuq::bench
