// `process`: fork/exec of the service's argv in a process group of its own, a pid file for
// adoption after an agent restart, signals to the group (never by name).
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "gpu/runtime/runtime.hpp"

extern char** environ;

namespace gpuq::gpu {

namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// After SIGKILL a process is gone within milliseconds unless it is stuck in the kernel (a GPU
// driver call): past this we report a timeout rather than wait forever.
constexpr Millis kKillWait{10'000};

Error SysError(std::string_view what) {
  return Error{Errc::kInternal, fmt::format("{}: {}", what, std::strerror(errno))};
}

// The fields of /proc/<pid>/stat we need.
struct ProcStat {
  char state = '?';
  int pgid = 0;
  unsigned long long start_time = 0;  // clock ticks since boot: tells a reused pid apart
};

std::optional<ProcStat> ReadStat(int pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  ProcStat stat;
  std::string skip;
  int ppid = 0;
  fields >> stat.state >> ppid >> stat.pgid;
  for (int field = 6; field < 22 && fields; ++field) fields >> skip;  // session .. priority, nice..
  fields >> stat.start_time;
  if (!fields) return std::nullopt;
  return stat;
}

bool IsDead(const ProcStat& stat) { return stat.state == 'Z' || stat.state == 'X'; }

// Live members of process group `pgid` (zombies excluded: they hold no memory).
std::vector<int> GroupMembers(int pgid) {
  std::vector<int> pids;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    int pid = 0;
    auto [ptr, parse_ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (parse_ec != std::errc() || ptr != name.data() + name.size()) continue;
    auto stat = ReadStat(pid);
    if (stat && stat->pgid == pgid && !IsDead(*stat)) pids.push_back(pid);
  }
  return pids;
}

// Our child has exited (a zombie) but is not reaped yet. While unreaped its pid, and so its
// process group id, stays reserved: signalling the group then cannot reach a stranger.
bool ChildExited(pid_t pid) {
  siginfo_t info{};
  int rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  if (rc != 0) return errno == ECHILD;  // reaped elsewhere: gone all the same
  return info.si_pid == pid;
}

std::string DescribeStatus(int status) {
  if (WIFSIGNALED(status)) {
    const char* abbrev = ::sigabbrev_np(WTERMSIG(status));
    return abbrev ? fmt::format("killed by SIG{}", abbrev)
                  : fmt::format("killed by signal {}", WTERMSIG(status));
  }
  return fmt::format("exit code {}", WEXITSTATUS(status));
}

// The agent's environment with `extra` set over it (later entries of `extra` win).
std::vector<std::string> BuildEnv(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::map<std::string, std::string> overrides;
  for (const auto& [key, value] : extra) overrides[key] = value;
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq != std::string_view::npos && overrides.count(std::string(entry.substr(0, eq)))) {
      continue;
    }
    env.emplace_back(entry);
  }
  for (const auto& [key, value] : overrides) env.push_back(key + "=" + value);
  return env;
}

// fork/exec of `argv` (PATH lookup when argv[0] has no '/') in a new process group, stdout and
// stderr to `out_fd`, stdin from /dev/null. Returns once exec succeeded or failed: exec failure
// is kInvalidArgument "cannot execute <argv0>: <reason>".
Result<pid_t> Spawn(const std::vector<std::string>& argv_strings,
                    const std::vector<std::string>& env_strings, int out_fd, bool die_with_parent) {
  if (argv_strings.empty() || argv_strings.front().empty()) {
    return Error{Errc::kInvalidArgument, "empty argv"};
  }
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& a : argv_strings) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int err_pipe[2];  // exec failure: the child writes its errno here; a good exec closes it
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return SysError("pipe");
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    Error error = SysError("fork");
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    if (devnull >= 0) ::close(devnull);
    return error;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    }
    // Until setpgid this child was in the agent's group: a stop signal meant for the agent may
    // be pending, held by the inherited mask. Ignoring discards it; then defaults and an empty
    // mask, so the service starts with nothing queued and default dispositions.
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) ::sigaction(sig, &ign, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD}) {
      ::sigaction(sig, &dfl, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    if (devnull >= 0) ::dup2(devnull, 0);
    // Descriptors other threads opened without O_CLOEXEC must not leak into the service.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execvpe(argv[0], argv.data(), envp.data());
    int error = errno;
    [[maybe_unused]] ssize_t n = ::write(err_pipe[1], &error, sizeof error);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // both sides set it: no race with an early signal to the group
  ::close(err_pipe[1]);
  if (devnull >= 0) ::close(devnull);
  int exec_errno = 0;
  ssize_t n;
  while ((n = ::read(err_pipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  ::close(err_pipe[0]);
  if (n == sizeof exec_errno) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return Error{Errc::kInvalidArgument, fmt::format("cannot execute {}: {}", argv_strings.front(),
                                                     std::strerror(exec_errno))};
  }
  return pid;
}

// Polls `done` with a short, growing interval until it is true or `deadline` passes.
template <class Done>
bool PollUntil(SteadyClock::time_point deadline, Done done) {
  Millis interval(1);
  while (true) {
    if (done()) return true;
    auto now = SteadyClock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<SteadyClock::duration>(interval, deadline - now));
    interval = std::min(interval * 2, Millis(20));
  }
}

std::optional<int> ReadPidFile(const fs::path& path) {
  std::ifstream in(path);
  long long pid = 0;
  if (!in || !(in >> pid) || pid <= 1 || pid > std::numeric_limits<int>::max()) {
    return std::nullopt;
  }
  return static_cast<int>(pid);
}

Result<void> WritePidFile(const fs::path& path, int pid) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  // Written aside and renamed: a reader never sees a half-written pid.
  fs::path temp = path;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << pid << "\n";
    if (!out.flush()) {
      return Error{Errc::kInternal, fmt::format("cannot write pid file {}", path.string())};
    }
  }
  fs::rename(temp, path, ec);
  if (ec) {
    return Error{Errc::kInternal,
                 fmt::format("cannot write pid file {}: {}", path.string(), ec.message())};
  }
  return Ok();
}

class ProcessRuntime final : public ServiceRuntime {
 public:
  explicit ProcessRuntime(InstanceSpec spec) : spec_(std::move(spec)) {}

  Result<bool> Adopt() override {
    std::lock_guard lock(mutex_);
    if (AliveLocked()) return true;
    if (spec_.pid_file.empty()) return false;
    auto pid = ReadPidFile(spec_.pid_file);
    if (!pid) return false;
    auto stat = ReadStat(*pid);
    // Its own group leader, as Start leaves it: then the whole group is the instance's.
    if (!stat || IsDead(*stat) || ::getpgid(*pid) != *pid) return false;
    pid_ = *pid;
    own_child_ = false;
    start_time_ = stat->start_time;
    spdlog::info("service adopted service={} pid={}", spec_.key, pid_);
    return true;
  }

  Result<void> Start() override {
    std::lock_guard lock(mutex_);
    if (AliveLocked()) return Ok();  // already running: starting twice is not an error
    std::vector<std::pair<std::string, std::string>> extra;
    extra.emplace_back("CUDA_VISIBLE_DEVICES",
                       spec_.gpu_uuid.empty() ? std::to_string(spec_.gpu) : spec_.gpu_uuid);
    if (spec_.port > 0) extra.emplace_back("PORT", std::to_string(spec_.port));
    for (const auto& [key, value] : spec_.service.env) extra.emplace_back(key, value);
    auto env = BuildEnv(extra);

    BOOST_OUTCOME_TRY(int log_fd, OpenLog());
    auto pid = Spawn(spec_.service.argv, env, log_fd, spec_.die_with_parent);
    ::close(log_fd);
    if (!pid) return pid.error();
    pid_ = pid.value();
    own_child_ = true;
    auto stat = ReadStat(pid_);
    start_time_ = stat ? stat->start_time : 0;
    if (!spec_.pid_file.empty()) {
      if (auto written = WritePidFile(spec_.pid_file, pid_); !written) {
        // Without a pid file a restarted agent could not find it: do not leave it running.
        ::kill(-pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        return written.error();
      }
    }
    spdlog::info("service started service={} pid={} gpu={} port={}", spec_.key, pid_, spec_.gpu,
                 spec_.port);
    return Ok();
  }

  Result<void> Stop(Millis grace, bool force) override {
    int pid;
    {
      std::lock_guard lock(mutex_);
      if (!AliveLocked()) return Ok();
      pid = pid_;
      stopping_ = true;
    }
    auto deadline = SteadyClock::now() + (force ? Millis(0) : grace);
    if (force) {
      SignalGroup(pid, SIGKILL);
    } else if (!spec_.service.stop_argv.empty()) {
      RunStopCommand(deadline);
    } else {
      SignalGroup(pid, spec_.service.stop_signal);
    }
    auto gone = [this, pid] {
      std::lock_guard lock(mutex_);
      return pid_ != pid || !AliveLocked();
    };
    if (!PollUntil(deadline, gone)) {
      if (!force) {
        spdlog::info("service did not stop in time, killing service={} pid={} grace_ms={}",
                     spec_.key, pid, grace.count());
      }
      SignalGroup(pid, SIGKILL);
      if (!PollUntil(SteadyClock::now() + kKillWait, gone)) {
        return Error{Errc::kTimeout, fmt::format("{} (pid {}) still there {} ms after SIGKILL",
                                                 spec_.key, pid, kKillWait.count())};
      }
    }
    // The leader is gone and what was left of its group got SIGKILL: wait for those too, they
    // may hold GPU memory.
    if (!PollUntil(SteadyClock::now() + kKillWait, [pid] { return GroupMembers(pid).empty(); })) {
      return Error{Errc::kTimeout,
                   fmt::format("process group {} of {} still there after SIGKILL", pid, spec_.key)};
    }
    return Ok();
  }

  bool Running() override {
    std::lock_guard lock(mutex_);
    return AliveLocked();
  }

  std::vector<int> Pids() override {
    std::lock_guard lock(mutex_);
    if (pid_ <= 0) return {};
    return GroupMembers(pid_);
  }

  std::string Describe() const override {
    std::lock_guard lock(mutex_);
    if (pid_ > 0) return fmt::format("pid {}", pid_);
    return fmt::format("process {} (not running)", spec_.key);
  }

  std::optional<int> Pid() const override {
    std::lock_guard lock(mutex_);
    if (pid_ > 0) return pid_;
    return std::nullopt;
  }

 private:
  Result<int> OpenLog() {
    if (spec_.log_file.empty()) {
      int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      if (fd < 0) return SysError("open /dev/null");
      return fd;
    }
    std::error_code ec;
    if (spec_.log_file.has_parent_path()) {
      fs::create_directories(spec_.log_file.parent_path(), ec);
    }
    int fd = ::open(spec_.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return SysError(fmt::format("open {}", spec_.log_file.string()));
    return fd;
  }

  // Signals the instance's group while we are sure it is still ours (the lock keeps a
  // concurrent Running() from reaping it in between).
  void SignalGroup(int pid, int sig) {
    std::lock_guard lock(mutex_);
    if (pid_ == pid) ::kill(-pid, sig);
  }

  // Runs stop_argv (no shell) with the instance's environment, output to its log, and waits for
  // it until `deadline`; one still running then is killed with its group.
  void RunStopCommand(SteadyClock::time_point deadline) {
    std::vector<std::pair<std::string, std::string>> extra;
    if (spec_.port > 0) extra.emplace_back("PORT", std::to_string(spec_.port));
    for (const auto& [key, value] : spec_.service.env) extra.emplace_back(key, value);
    auto log_fd = OpenLog();
    if (!log_fd) {
      spdlog::warn("service stop command not run service={} error={}", spec_.key,
                   log_fd.error().message);
      return;
    }
    auto pid = Spawn(spec_.service.stop_argv, BuildEnv(extra), log_fd.value(), true);
    ::close(log_fd.value());
    if (!pid) {
      spdlog::warn("service stop command failed service={} error={}", spec_.key,
                   pid.error().message);
      return;
    }
    int status = 0;
    bool exited =
        PollUntil(deadline, [&] { return ::waitpid(pid.value(), &status, WNOHANG) != 0; });
    if (!exited) {
      ::kill(-pid.value(), SIGKILL);
      while (::waitpid(pid.value(), &status, 0) < 0 && errno == EINTR) {
      }
      spdlog::warn("service stop command timed out service={}", spec_.key);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      spdlog::warn("service stop command failed service={} status={}", spec_.key,
                   DescribeStatus(status));
    }
  }

  // Whether the instance is there; notices (and for our child, reaps) one that is gone, kills
  // what is left of its group and removes the pid file. Holds mutex_.
  bool AliveLocked() {
    if (pid_ <= 0) return false;
    std::string how;
    if (own_child_) {
      if (!ChildExited(pid_)) return true;
      ::kill(-pid_, SIGKILL);  // the leader is an unreaped zombie: the group id is still ours
      int status = 0;
      pid_t reaped;
      while ((reaped = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
      }
      how = reaped == pid_ ? DescribeStatus(status) : "reaped elsewhere";
    } else {
      auto stat = ReadStat(pid_);
      if (stat && !IsDead(*stat) && stat->start_time == start_time_) return true;
      // Not our child: its group id may be reused once empty, so signal only live members.
      if (!GroupMembers(pid_).empty()) ::kill(-pid_, SIGKILL);
      how = "gone";
    }
    if (stopping_) {
      spdlog::info("service stopped service={} pid={} how={}", spec_.key, pid_, how);
    } else {
      spdlog::warn("service exited unexpectedly service={} pid={} how={}", spec_.key, pid_, how);
    }
    if (!spec_.pid_file.empty() && ReadPidFile(spec_.pid_file) == pid_) {
      std::error_code ec;
      fs::remove(spec_.pid_file, ec);
    }
    pid_ = -1;
    own_child_ = false;
    stopping_ = false;
    return false;
  }

  InstanceSpec spec_;
  mutable std::mutex mutex_;
  int pid_ = -1;            // the group leader; -1 when there is none
  bool own_child_ = false;  // we forked it (waitpid) rather than adopted it (poll /proc)
  unsigned long long start_time_ = 0;
  bool stopping_ = false;  // an exit now is the one Stop asked for
};

}  // namespace

std::unique_ptr<ServiceRuntime> MakeProcessRuntime(InstanceSpec spec) {
  return std::make_unique<ProcessRuntime>(std::move(spec));
}

}  // namespace gpuq::gpu
