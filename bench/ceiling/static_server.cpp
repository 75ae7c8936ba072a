// The machine's ceiling for bench/run.sh: the smallest reasonable Beast HTTP/1.1 keep-alive
// server, answering every request with one fixed small JSON body. gpuq's API is measured
// against it in the same run, so the ratio says how much of the box's HTTP capacity gpuq
// keeps while doing real work.
//
//   gpuq_bench_ceiling [--host 127.0.0.1] [--port 0] [--threads N]
//
// Prints the bound port on stdout (one line) once it listens; runs until SIGINT/SIGTERM.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kBody = R"({"status":"pending","result":null})";
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> Serve(tcp::socket socket) {
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> request;
    auto [read_ec, read_n] = co_await http::async_read(socket, buffer, request, kNoThrow);
    if (read_ec) break;
    http::response<http::string_body> response{http::status::ok, request.version()};
    response.set(http::field::content_type, "application/json");
    response.keep_alive(request.keep_alive());
    response.body() = kBody;
    response.prepare_payload();
    auto [write_ec, write_n] = co_await http::async_write(socket, response, kNoThrow);
    if (write_ec || !response.keep_alive()) break;
  }
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

void Spawn(asio::any_io_executor executor, asio::awaitable<void> task) {
  asio::co_spawn(executor, std::move(task), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);  // a bug in a benchmark tool: die loudly
  });
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // EMFILE and friends: keep serving the connections we have
    }
    auto executor = socket.get_executor();
    Spawn(executor, Serve(std::move(socket)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    if (flag == "--host") host = argv[i + 1];
    else if (flag == "--port") port = std::atoi(argv[i + 1]);
    else if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--host H] [--port P] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  if (threads < 1) threads = 1;

  asio::io_context io(threads);
  tcp::acceptor acceptor(io);
  tcp::endpoint endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port));
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  std::printf("%d\n", static_cast<int>(acceptor.local_endpoint().port()));
  std::fflush(stdout);

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const beast::error_code&, int) { io.stop(); });
  Spawn(io.get_executor(), Accept(acceptor));

  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}
