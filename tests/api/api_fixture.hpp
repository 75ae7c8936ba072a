#pragma once
// A real api::Server on 127.0.0.1 (port 0) in a background thread, over a real SqliteStore in a
// temp dir, with the test connector. Talk to it over sockets.
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "api/server.hpp"
#include "api/test_connector.hpp"
#include "config/config.hpp"
#include "http/client.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::api::testing {

struct ServerOptions {
  std::string token;
  std::size_t max_body_bytes = 4096;
  int threads = 2;
  std::map<std::string, ServiceSpec> services;  // config.services (none by default)
  std::map<int, std::string> phases = {
      {1, "crawl"}, {2, "analysis"}, {3, "tts"}, {4, "video"}, {5, "render"}};
  std::optional<Millis> gpu_command_timeout;  // the server's test hook for GPU command waits
};

class TestServer {
 public:
  explicit TestServer(ServerOptions options = {}) {
    config_.data_dir = dir_.path() / "data";
    std::filesystem::create_directories(config_.data_dir / "runs");
    config_.server.token = options.token;
    config_.server.max_body_bytes = options.max_body_bytes;
    config_.task_types = TestTaskTypes();
    config_.services = options.services;
    config_.phases = options.phases;
    auto store = store::SqliteStore::Open(config_.data_dir / "gpuq.db", clock_);
    if (!store) throw std::runtime_error(store.error().message);
    store_ = std::move(store.value());
    server_ = std::make_unique<Server>(
        ServerDeps{*store_, config_, connectors_, &clock_, options.gpu_command_timeout});
    auto port = server_->Listen("127.0.0.1", 0);
    if (!port) throw std::runtime_error(port.error().message);
    port_ = port.value();
    thread_ = std::thread([this, threads = options.threads] { server_->Run(threads); });
  }
  ~TestServer() { Stop(); }

  void Stop() {
    server_->Stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }
  store::Store& store() { return *store_; }
  ManualClock& clock() { return clock_; }
  const std::filesystem::path& data_dir() const { return config_.data_dir; }
  std::filesystem::path RunDir(const std::string& id) const { return data_dir() / "runs" / id; }

  http::Client Client() const { return http::Client(http::Endpoint{"127.0.0.1", port_}); }

  // Every run in the store, to check that a rejected request changed nothing.
  size_t RunCount() {
    store::RunFilter all;
    all.limit = 1000;
    auto page = store_->List(all);
    EXPECT_TRUE(page) << page.error().message;
    return page ? page.value().runs.size() : 0;
  }

 private:
  gpuq::testing::TempDir dir_;
  ManualClock clock_;
  config::Config config_;
  connectors::ConnectorRegistry connectors_ = TestConnectors();
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// Sends `bytes` on a fresh connection, half-closes nothing, and reads until the server closes
// (or `limit` bytes). For requests the client cannot make (oversized Content-Length...).
inline std::string RawExchange(int port, const std::string& bytes, size_t limit = 1 << 20) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{.tv_sec = 30, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may stop reading once it has answered
    sent += static_cast<size_t>(n);
  }
  std::string out;
  char buffer[4096];
  while (out.size() < limit) {
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace gpuq::api::testing
