// gpuq-fake-service: a stand-in for a GPU inference service (ComfyUI, A1111, CosyVoice, Ollama,
// or a generic one) that tests and the demo start as a real process.
//
//   gpuq-fake-service --port N [--name NAME] [--personality P] [--vram-mb N] [--startup-ms N]
//                     [--work-ms N] [--fault MODE] [--data-dir DIR] [--fail-health]
//                     [--exit-after-ms N] [--ignore-sigterm] [--no-pdeathsig]
//
// - --personality generic (default) | comfyui | a1111 | cosyvoice | ollama: the protocol it
//   speaks besides the generic routes below (see each personality's file for its routes, how
//   --work-ms paces it and the --fault modes it knows).
// - --port defaults to $PORT.
// - Dies with its parent: PR_SET_PDEATHSIG(SIGTERM) (SIGKILL with --ignore-sigterm, which would
//   otherwise make it immortal), and exits at once when its parent is already gone (reparented
//   to pid 1) unless --no-pdeathsig.
// - Listens on 127.0.0.1:PORT only after --startup-ms, like a model server loading weights.
// - GET /health -> 200 {"status":"ok","name","vram_mb","gpu":"<CUDA_VISIBLE_DEVICES>","port"}
//   (500 with --fail-health).
// - POST /work with a JSON object {"sleep_ms"?: N, "fail"?: bool|string, ...} -> after sleep_ms
//   (default --work-ms) 200 {"service","gpu","port","input": <body>}, or 500 {"error": "..."}
//   when fail is set. Each connection has its own thread, so a slow /work never blocks /health.
// - --exit-after-ms N: exits with code 3 N ms after start (a crash, counted from start).
// - SIGTERM / SIGINT: exits 0 at once, unless --ignore-sigterm.
// - One line per request on stdout (and one when a /work starts).
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <memory>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "testing/fake_service/fake_server.hpp"

namespace {

using gpuq::fake::Exchange;
using gpuq::fake::Log;
using gpuq::fake::Options;

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Json = nlohmann::json;


[[noreturn]] void Usage(std::string_view problem) {
  std::fprintf(stderr,
               "gpuq-fake-service: %.*s\nusage: gpuq-fake-service --port N [--name NAME] "
               "[--personality generic|comfyui|a1111|cosyvoice|ollama] [--vram-mb N] "
               "[--startup-ms N] [--work-ms N] [--fault MODE] [--data-dir DIR] [--fail-health] "
               "[--exit-after-ms N] [--ignore-sigterm] [--no-pdeathsig]\n",
               static_cast<int>(problem.size()), problem.data());
  std::exit(2);
}

int ParseCount(std::string_view flag, const char* text) {
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < 0 || value > 1'000'000'000) {
    Usage(fmt::format("{} needs a non-negative integer, got '{}'", flag, text));
  }
  return static_cast<int>(value);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  bool has_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) Usage(fmt::format("{} needs a value", flag));
      return argv[++i];
    };
    if (flag == "--port") {
      options.port = ParseCount(flag, value());
      has_port = true;
    } else if (flag == "--name") {
      options.name = value();
    } else if (flag == "--personality") {
      options.personality = value();
    } else if (flag == "--fault") {
      options.fault = value();
    } else if (flag == "--data-dir") {
      options.data_dir = value();
    } else if (flag == "--vram-mb") {
      options.vram_mb = ParseCount(flag, value());
    } else if (flag == "--startup-ms") {
      options.startup_ms = ParseCount(flag, value());
    } else if (flag == "--work-ms") {
      options.work_ms = ParseCount(flag, value());
    } else if (flag == "--fail-health") {
      options.fail_health = true;
    } else if (flag == "--exit-after-ms") {
      options.exit_after_ms = ParseCount(flag, value());
    } else if (flag == "--ignore-sigterm") {
      options.ignore_sigterm = true;
    } else if (flag == "--no-pdeathsig") {
      options.no_pdeathsig = true;
    } else {
      Usage(fmt::format("unknown argument '{}'", flag));
    }
  }
  // Like many model servers, the port may come from the environment (a runtime sets PORT).
  if (const char* env_port = std::getenv("PORT"); !has_port && env_port != nullptr) {
    options.port = ParseCount("PORT", env_port);
    has_port = true;
  }
  if (!has_port || options.port <= 0 || options.port > 65535) Usage("--port N is required");
  return options;
}


[[noreturn]] void Exit(int code, const std::string& why) {
  Log(why);
  std::_Exit(code);  // connection threads may be mid-request: no destructors, no joins
}

struct Service {
  Options options;
  std::string gpu;
  std::unique_ptr<gpuq::fake::Personality> personality;  // nullptr: generic only

  // The routes every personality has: /health (what gpuq's health checks poll) and /work.
  void HandleGeneric(Exchange& ex) {
    std::string_view path = ex.Path();
    if (path == "/health" && ex.Method() == "GET") {
      Json body = {{"status", options.fail_health ? "failing" : "ok"},
                   {"name", options.name},
                   {"personality", options.personality},
                   {"vram_mb", options.vram_mb},
                   {"gpu", gpu},
                   {"port", options.port}};
      ex.Reply(options.fail_health ? http::status::internal_server_error : http::status::ok, body);
      return;
    }
    if (path == "/work" && ex.Method() == "POST") {
      Json input = ex.request.body().empty() ? Json::object() : ex.BodyJson();
      if (input.is_discarded() || !input.is_object()) {
        ex.Reply(http::status::bad_request, Json{{"error", "body must be a JSON object"}});
        return;
      }
      int sleep_ms = options.work_ms;
      if (auto it = input.find("sleep_ms"); it != input.end() && it->is_number()) {
        sleep_ms = std::max(0, it->get<int>());
      }
      Log(fmt::format("{} work started sleep_ms={}", options.name, sleep_ms));
      // The sleep is the simulated work itself, not a wait for a condition.
      std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
      if (auto it = input.find("fail"); it != input.end()) {
        if (it->is_string()) {
          ex.Reply(http::status::internal_server_error, Json{{"error", it->get<std::string>()}});
          return;
        }
        if (it->is_boolean() && it->get<bool>()) {
          ex.Reply(http::status::internal_server_error,
                   Json{{"error", fmt::format("{} failed the work as asked", options.name)}});
          return;
        }
      }
      ex.Reply(http::status::ok, Json{{"service", options.name},
                                      {"gpu", gpu},
                                      {"port", options.port},
                                      {"input", input}});
      return;
    }
    ex.Reply(http::status::not_found, Json{{"error", fmt::format("no route {}", path)}});
  }

  void Serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    beast::error_code ec;
    while (true) {
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) break;
      Exchange ex(socket, buffer, req, options, gpu);
      if (!personality || !personality->Handle(ex)) HandleGeneric(ex);
      Log(fmt::format("{} {} {} {}", options.name, std::string_view(req.method_string()),
                      std::string_view(req.target()), ex.status_sent));
      if (ex.done) return;  // dropped, closed, or taken over (a WebSocket)
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
  }
};

}  // namespace

int main(int argc, char** argv) {
  Service service{ParseOptions(argc, argv), {}, nullptr};
  const Options& options = service.options;
  if (options.personality != "generic") {
    service.personality = gpuq::fake::MakePersonality(options);
    if (!service.personality) {
      Usage(fmt::format("unknown personality '{}' (generic, comfyui, a1111, cosyvoice, ollama)",
                        options.personality));
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  if (!options.no_pdeathsig) {
    ::prctl(PR_SET_PDEATHSIG, options.ignore_sigterm ? SIGKILL : SIGTERM);
    // The parent may have died before prctl: then nothing would ever signal us.
    if (::getppid() == 1) {
      std::fprintf(stderr, "gpuq-fake-service: parent already gone\n");
      return 1;
    }
  }
  if (const char* devices = std::getenv("CUDA_VISIBLE_DEVICES")) service.gpu = devices;

  // Stop signals arrive only in the waiter thread; every other thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  if (options.ignore_sigterm) {
    ::signal(SIGTERM, SIG_IGN);
  } else {
    sigaddset(&stop_signals, SIGTERM);
  }
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::thread([stop_signals, name = options.name] {
    int sig = 0;
    ::sigwait(&stop_signals, &sig);
    Exit(0, fmt::format("{} stopping on signal {}", name, sig));
  }).detach();

  if (options.exit_after_ms) {
    std::thread([ms = *options.exit_after_ms, name = options.name] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));  // the simulated crash time
      Exit(3, fmt::format("{} exiting after {} ms as asked", name, ms));
    }).detach();
  }

  Log(fmt::format("{} starting port={} vram_mb={} gpu={} startup_ms={}", options.name, options.port,
                  options.vram_mb, service.gpu, options.startup_ms));
  // A model server loads its weights before it listens: refused connections until then.
  std::this_thread::sleep_for(std::chrono::milliseconds(options.startup_ms));

  asio::io_context io;
  tcp::acceptor acceptor(io);
  tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"),
                         static_cast<unsigned short>(options.port));
  beast::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    Exit(1,
         fmt::format("{} cannot listen on port {}: {}", options.name, options.port, ec.message()));
  Log(fmt::format("{} listening port={}", options.name, options.port));

  while (true) {
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (ec) continue;
    std::thread([&service, s = std::move(socket)]() mutable {
      service.Serve(std::move(s));
    }).detach();
  }
}

namespace gpuq::fake {

std::unique_ptr<Personality> MakePersonality(const Options& options) {
  if (options.personality == "comfyui") return MakeComfyUi(options);
  if (options.personality == "a1111") return MakeA1111(options);
  if (options.personality == "cosyvoice") return MakeCosyVoice(options);
  if (options.personality == "ollama") return MakeOllama(options);
  return nullptr;
}

}  // namespace gpuq::fake
