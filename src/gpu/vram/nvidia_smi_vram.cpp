#include "gpu/vram/nvidia_smi_vram.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace gpuq::gpu {

namespace {

// ---- parsing ----

std::string_view Trim(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  while (true) {
    auto comma = line.find(',');
    fields.push_back(Trim(line.substr(0, comma)));
    if (comma == std::string_view::npos) return fields;
    line.remove_prefix(comma + 1);
  }
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto newline = text.find('\n');
    auto line = Trim(text.substr(0, newline));
    if (!line.empty()) lines.push_back(line);
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return lines;
}

// A whole non-negative number; nullopt for "[N/A]", "[Not Supported]" and anything else.
std::optional<int> Number(std::string_view field) {
  int value = 0;
  auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (ec != std::errc() || end != field.data() + field.size() || value < 0) return std::nullopt;
  return value;
}

// "[N/A]" and friends: not a value, whatever the field.
std::string Text(std::string_view field) {
  if (field.size() >= 2 && field.front() == '[' && field.back() == ']') return {};
  return std::string(field);
}

Error ParseError(std::string_view what, std::string_view line) {
  return Error{Errc::kUnavailable, fmt::format("nvidia-smi: cannot parse {}: '{}'", what, line)};
}

// ---- running nvidia-smi ----

struct Output {
  int status = 0;  // exit code, or 128 + signal
  std::string out;
  std::string err;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
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
  return Error{Errc::kUnavailable, fmt::format("nvidia-smi: {}: {}", what, std::strerror(errno))};
}

bool HasExited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid;
}

// Runs argv (no shell) with stdout and stderr captured apart, so a warning on stderr cannot
// break the CSV. Past `timeout` its process group is SIGKILLed and the result is kUnavailable.
Result<Output> Run(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return SysError("pipe");
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return SysError("pipe");
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) return SysError("pipe");  // exec's errno, if any
  Fd exec_read(exec_pipe[0]), exec_write(exec_pipe[1]);
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork");
  if (pid == 0) {  // only async-signal-safe calls from here
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the querying thread is waiting; if it dies, so do we
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (devnull.get() >= 0) ::dup2(devnull.get(), 0);
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execvp(argv[0], argv.data());
    int error = errno;
    [[maybe_unused]] ssize_t n = ::write(exec_pipe[1], &error, sizeof error);
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  out_write.Reset();
  err_write.Reset();
  exec_write.Reset();
  devnull.Reset();

  int exec_errno = 0;
  if (::read(exec_read.get(), &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return Error{Errc::kUnavailable,
                 fmt::format("cannot execute {}: {}", args.front(), std::strerror(exec_errno))};
  }

  // Readable once the child exits; -1 on old kernels, where a short poll notices the exit.
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);
  Output output;
  auto drain = [](int fd, std::string& into) {  // true at end of file
    char buffer[8192];
    while (true) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n > 0) {
        into.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n == 0;
    }
  };

  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true, err_open = true, timed_out = false;
  while (!HasExited(pid) || out_open || err_open) {
    if (HasExited(pid)) {
      // Whatever it left behind holds the pipes open: nothing more is coming that we want.
      ::kill(-pid, SIGKILL);
      if (out_open) drain(out_read.get(), output.out);
      if (err_open) drain(err_read.get(), output.err);
      break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    pollfd fds[3];
    nfds_t count = 0;
    if (pidfd.get() >= 0) fds[count++] = {pidfd.get(), POLLIN, 0};
    if (out_open) fds[count++] = {out_read.get(), POLLIN, 0};
    if (err_open) fds[count++] = {err_read.get(), POLLIN, 0};
    int wait_ms = static_cast<int>(left.count()) + 1;
    if (pidfd.get() < 0) wait_ms = std::min(wait_ms, 10);
    ::poll(fds, count, wait_ms);
    if (out_open && drain(out_read.get(), output.out)) out_open = false;
    if (err_open && drain(err_read.get(), output.err)) err_open = false;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Error{Errc::kUnavailable, fmt::format("{} did not answer within {} ms (killed)",
                                                 args.front(), timeout.count())};
  }
  output.status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  return output;
}

// Runs one query; a non-zero exit is kUnavailable with what the program said.
Result<std::string> RunQuery(const std::string& program, std::string_view query,
                             std::chrono::milliseconds timeout) {
  auto ran = Run({program, std::string(query), std::string(kSmiFormat)}, timeout);
  if (!ran) return ran.error();
  Output& output = ran.value();
  if (output.status != 0) {
    std::string said = std::string(Trim(output.out + "\n" + output.err));
    if (said.size() > 500) said.resize(500);
    return Error{Errc::kUnavailable,
                 fmt::format("{} exited with {}: {}", program, output.status, said)};
  }
  return std::move(output.out);
}

}  // namespace

Result<std::vector<GpuMemory>> ParseNvidiaSmi(std::string_view gpus_csv,
                                              std::string_view apps_csv) {
  std::vector<GpuMemory> gpus;
  for (auto line : Lines(gpus_csv)) {
    auto fields = SplitFields(line);
    if (fields.size() < 6) return ParseError("GPU line", line);
    // index, name, uuid, total, used, free: a name is the only field that may hold a comma.
    size_t n = fields.size();
    auto index = Number(fields[0]);
    if (!index) return ParseError("GPU index", line);
    std::string name(fields[1]);
    for (size_t i = 2; i + 4 < n; ++i) name += fmt::format(", {}", fields[i]);
    auto total = Number(fields[n - 3]);
    auto used = Number(fields[n - 2]);
    auto free = Number(fields[n - 1]);
    if (!total && used && free) total = *used + *free;
    if (!total) return ParseError("GPU memory.total", line);

    GpuMemory gpu;
    gpu.index = *index;
    gpu.name = Text(name);
    gpu.uuid = Text(fields[n - 4]);
    gpu.total_mb = *total;
    if (used && free) {
      gpu.used_mb = *used;
      gpu.free_mb = *free;
    } else if (free) {
      gpu.free_mb = *free;
      gpu.used_mb = std::max(0, *total - *free);
    } else if (used) {
      gpu.used_mb = *used;
      gpu.free_mb = std::max(0, *total - *used);
    } else {  // nothing known: plan as if full rather than risk an out-of-memory
      gpu.used_mb = *total;
      gpu.free_mb = 0;
    }
    gpu.processes_known = true;
    gpus.push_back(std::move(gpu));
  }
  for (auto line : Lines(apps_csv)) {
    auto fields = SplitFields(line);
    if (fields.size() < 3) continue;
    auto pid = Number(fields[1]);
    if (!pid) continue;
    std::string uuid = Text(fields[0]);
    for (auto& gpu : gpus) {
      if (uuid.empty() || gpu.uuid != uuid) continue;
      gpu.processes.push_back(ProcessMemory{.pid = *pid, .used_mb = Number(fields[2])});
      break;
    }
  }
  std::sort(gpus.begin(), gpus.end(),
            [](const GpuMemory& a, const GpuMemory& b) { return a.index < b.index; });
  return gpus;
}

Result<std::unique_ptr<NvidiaSmiVram>> NvidiaSmiVram::Open(std::string program,
                                                           std::chrono::milliseconds timeout) {
  std::unique_ptr<NvidiaSmiVram> smi(new NvidiaSmiVram(std::move(program), timeout));
  auto first = smi->Query();
  if (!first) return first.error();
  return smi;
}

Result<std::vector<GpuMemory>> NvidiaSmiVram::Query() {
  auto gpus = RunQuery(program_, kSmiGpuQuery, timeout_);
  if (!gpus) return gpus.error();
  auto apps = RunQuery(program_, kSmiAppsQuery, timeout_);
  if (!apps) return apps.error();
  return ParseNvidiaSmi(gpus.value(), apps.value());
}

}  // namespace gpuq::gpu
