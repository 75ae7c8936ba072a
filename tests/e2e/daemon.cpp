#include "e2e/daemon.hpp"

#include <fstream>
#include <stdexcept>

#include "http/client.hpp"
#include "support/wait.hpp"

namespace gpuq::e2e {

nlohmann::json CliResult::Json() const {
  // The CLI prints JSON on stdout; a progress or warning line may precede it on stderr.
  auto start = output.find_first_of("{[");
  if (start == std::string::npos) return nullptr;
  auto parsed = nlohmann::json::parse(output.substr(start), nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(nullptr) : parsed;
}

Cluster::Cluster(const std::string& extra_toml) : port_(testing::FreePort()) {
  std::ofstream(dir_ / "gpuq.toml") << "data_dir = \"data\"\n"
                                    << "log_level = \"debug\"\n"
                                    << "[server]\nlisten = \"127.0.0.1:" << port_ << "\"\n"
                                    << "[agent]\nlease_ttl_s = 3\nheartbeat_s = 1\npoll_ms = 50\n"
                                    << "cpu_workers = 2\ndrain_timeout_s = 1\n"
                                    << extra_toml;
}

std::string Cluster::server_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::unique_ptr<testing::ChildProcess> Cluster::StartServer(bool no_agent,
                                                            const std::string& agent_id) {
  std::vector<std::string> args = {"--agent-id", agent_id};
  if (no_agent) args.push_back("--no-agent");
  return StartServerWith(dir_ / "gpuq.toml", args);
}

std::unique_ptr<testing::ChildProcess> Cluster::StartServerWith(
    const std::filesystem::path& config, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {testing::GpuqBinary().string(), "serve", "--config",
                                   config.string(), "--listen",
                                   "127.0.0.1:" + std::to_string(port_), "--data-dir",
                                   data_dir().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto log = dir_ / ("server-" + std::to_string(++processes_) + ".log");
  auto child = std::make_unique<testing::ChildProcess>(argv, log, env);
  http::Client client({"127.0.0.1", port_}, std::chrono::seconds(2));
  bool up = testing::WaitUntil([&] {
    auto r = client.Get("/health");
    return (r && r.value().status == 200) || !child->Running();
  });
  if (!up || !child->Running()) {
    throw std::runtime_error("gpuq serve did not come up: " + child->Output());
  }
  return child;
}

std::unique_ptr<testing::ChildProcess> Cluster::StartAgent(const std::string& agent_id) {
  auto log = dir_ / ("agent-" + agent_id + "-" + std::to_string(++processes_) + ".log");
  return std::make_unique<testing::ChildProcess>(
      std::vector<std::string>{testing::GpuqBinary().string(), "agent", "--config",
                               (dir_ / "gpuq.toml").string(), "--agent-id", agent_id},
      log);
}

CliResult Cluster::Cli(std::vector<std::string> args) const {
  args.insert(args.begin(), testing::GpuqBinary().string());
  args.push_back("--server");
  args.push_back(server_url());
  auto out = dir_ / ("cli-" + std::to_string(++cli_runs_) + ".out");
  testing::ChildProcess child(args, out);
  auto code = child.Wait(std::chrono::seconds(120));
  return {code.value_or(-1), child.Output()};
}

nlohmann::json Cluster::Status(const std::string& id) const {
  auto r = Cli({"status", id, "--json"});
  return r.exit_code == 0 ? r.Json() : nlohmann::json(nullptr);
}

bool Cluster::WaitForStatus(const std::string& id, const std::string& status) const {
  http::Client client({"127.0.0.1", port_}, std::chrono::seconds(5));
  return testing::WaitUntil(
      [&] {
        auto r = client.Get("/task_status/" + id);
        if (!r || r.value().status != 200) return false;
        auto run = nlohmann::json::parse(r.value().body, nullptr, false);
        return run.is_object() && run.value("status", "") == status;
      },
      std::chrono::seconds(90), std::chrono::milliseconds(50));
}

}  // namespace gpuq::e2e
