#include "connectors/command/child.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace gpuq::connectors {

std::vector<std::string> EnvironmentWith(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq != std::string_view::npos && extra.count(std::string(entry.substr(0, eq)))) continue;
    env.emplace_back(entry);
  }
  for (const auto& [key, value] : extra) env.push_back(key + "=" + value);
  return env;
}

namespace {

// Closes a file descriptor on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

Error SysError(std::string_view what) {
  return Error{Errc::kInternal, fmt::format("{}: {}", what, std::strerror(errno))};
}

using SteadyTime = std::chrono::steady_clock::time_point;

// Exited (a zombie), not yet reaped: its pid, and so its process group id, stays reserved
// until we reap it, so signalling the group afterwards cannot hit a stranger.
bool HasExited(pid_t pid) {
  siginfo_t info{};
  int rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  return rc == 0 && info.si_pid == pid;
}

}  // namespace

Result<ChildExit> RunChild(const ChildSpec& spec, std::stop_token stop,
                           const std::function<void(std::string_view)>& on_output) {
  if (spec.argv.empty() || spec.argv.front().empty()) {
    return Error{Errc::kInvalidArgument, "empty argv"};
  }
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::string cwd = spec.cwd.string();

  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return SysError("pipe");
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
  int err_pipe[2];  // exec failure: the child writes its errno here; closed by a good exec
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return SysError("pipe");
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (wake.get() < 0) return SysError("eventfd");
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork");
  if (pid == 0) {
    ::setpgid(0, 0);
    // Dies with the agent thread that started it, so a crashed agent leaves no orphans
    // running a run the queue hands to someone else.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // Until setpgid above, this child was in the daemon's process group, so a stop signal
    // meant for the daemon (Ctrl-C, systemd's group SIGTERM) may be pending here, held by the
    // mask inherited from the daemon. Ignoring a signal discards it if pending; then defaults
    // are restored and the mask cleared, so the command starts with nothing queued.
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) ::sigaction(sig, &ign, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD}) {
      ::sigaction(sig, &dfl, nullptr);
    }
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    int error = 0;
    if (::chdir(cwd.c_str()) != 0) error = errno;
    if (error == 0) {
      ::dup2(out_pipe[1], 1);
      ::dup2(out_pipe[1], 2);
      if (devnull.get() >= 0) ::dup2(devnull.get(), 0);
      // Descriptors other threads opened without O_CLOEXEC must not leak into the command.
      ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
      ::execvpe(argv[0], argv.data(), envp.data());
      error = errno;
    }
    [[maybe_unused]] ssize_t n = ::write(err_pipe[1], &error, sizeof error);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // both sides set it: no race with an early stop
  out_write.Reset();
  err_write.Reset();
  devnull.Reset();

  int exec_errno = 0;
  if (::read(err_read.get(), &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return Error{Errc::kInvalidArgument, fmt::format("cannot execute {}: {}", spec.argv.front(),
                                                     std::strerror(exec_errno))};
  }

  // Wake the poll below the moment stop is requested (no stop polling interval).
  std::stop_callback on_stop(stop, [fd = wake.get()] {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
  });
  // glibc 2.36's <sys/pidfd.h> lacks extern "C": call the system call directly.
  Fd pidfd(static_cast<int>(
      ::syscall(SYS_pidfd_open, pid, 0)));  // readable once the child exits; -1 on old kernels

  ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
  char buffer[16 * 1024];
  auto drain_output = [&] {
    while (true) {
      ssize_t n = ::read(out_read.get(), buffer, sizeof buffer);
      if (n > 0) {
        on_output(std::string_view(buffer, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n == 0;  // true on end of file
    }
  };

  ChildExit exit;
  bool output_open = true;
  std::optional<SteadyTime> kill_at;  // set once SIGTERM was sent
  bool killed = false;
  while (!HasExited(pid)) {
    if (stop.stop_requested() && !kill_at) {
      exit.stopped = true;
      ::kill(-pid, SIGTERM);
      kill_at = std::chrono::steady_clock::now() + spec.grace;
    }
    if (kill_at && !killed && std::chrono::steady_clock::now() >= *kill_at) {
      ::kill(-pid, SIGKILL);
      killed = true;
    }
    pollfd fds[3];
    nfds_t count = 0;
    fds[count++] = {wake.get(), POLLIN, 0};
    if (pidfd.get() >= 0) fds[count++] = {pidfd.get(), POLLIN, 0};
    if (output_open) fds[count++] = {out_read.get(), POLLIN, 0};
    // Without a pidfd, exit is noticed by this poll's timeout.
    int timeout_ms = pidfd.get() >= 0 ? 1000 : 10;
    if (kill_at && !killed) {
      auto left = std::chrono::duration_cast<Millis>(*kill_at - std::chrono::steady_clock::now());
      timeout_ms = std::clamp(static_cast<int>(left.count()) + 1, 0, timeout_ms);
    }
    ::poll(fds, count, timeout_ms);
    if (fds[0].revents & POLLIN) {
      uint64_t ignored = 0;
      [[maybe_unused]] ssize_t n = ::read(wake.get(), &ignored, sizeof ignored);
    }
    if (output_open && drain_output()) output_open = false;
  }
  // The leader is a zombie: finish off whatever it left in its group, then reap it.
  ::kill(-pid, SIGKILL);
  if (output_open) drain_output();  // what was written before the end; never waits
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    exit.signaled = true;
    exit.signal = WTERMSIG(status);
  } else {
    exit.code = WEXITSTATUS(status);
  }
  return exit;
}

}  // namespace gpuq::connectors
