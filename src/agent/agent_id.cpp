#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "agent/agent.hpp"

namespace gpuq::agent {

namespace {

std::string Trimmed(std::string text) {
  auto end = text.find_last_not_of(" \t\r\n");
  text.erase(end == std::string::npos ? 0 : end + 1);
  auto start = text.find_first_not_of(" \t\r\n");
  return start == std::string::npos ? std::string() : text.substr(start);
}

std::string ReadId(const std::filesystem::path &file) {
  std::ifstream in(file);
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  return Trimmed(text.str());
}

std::string NewAgentId() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
    std::strcpy(host, "host");
  }
  std::random_device rd;
  return fmt::format("{}-{:08x}", host, static_cast<uint32_t>(rd()));
}

}  // namespace

Result<std::string> ResolveAgentId(const std::filesystem::path &data_dir,
                                   const std::string &configured) {
  if (!configured.empty()) return configured;
  std::filesystem::path file = data_dir / "agent-id";
  if (std::string id = ReadId(file); !id.empty()) return id;

  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return Error{Errc::kInternal,
                 fmt::format("cannot create data dir {}: {}", data_dir.string(), ec.message())};
  }
  // Written to a private file, then linked into place: two agents starting at
  // once on one data dir agree on whichever id landed first, and no reader ever
  // sees a half-written file.
  std::string id = NewAgentId();
  std::filesystem::path tmp = data_dir / fmt::format("agent-id.{}.tmp", ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << "\n";
    if (!out.flush()) {
      return Error{Errc::kInternal, fmt::format("cannot write {}", tmp.string())};
    }
  }
  int rc = ::link(tmp.c_str(), file.c_str());
  int link_errno = errno;
  std::filesystem::remove(tmp, ec);
  if (rc != 0 && link_errno != EEXIST) {
    return Error{Errc::kInternal,
                 fmt::format("cannot create {}: {}", file.string(), std::strerror(link_errno))};
  }
  if (rc != 0) {
    std::string theirs = ReadId(file);
    if (theirs.empty()) {
      return Error{Errc::kInternal, fmt::format("{} exists but is empty", file.string())};
    }
    return theirs;
  }
  return id;
}

}  // namespace gpuq::agent
