#pragma once
// A blocking Docker Engine API client over the engine's unix socket (Docker, or podman's
// compatible service). Used by the docker service runtime and the container connector.
// Beast stays in docker_client.cpp.
//
// Thread-safe: every call opens its own connection (a unix socket connect costs microseconds)
// and runs its own deadline, so any number of threads may share one DockerClient.
//
// Errors: an engine reply that is not a success becomes an Error carrying the engine's own
// {"message"}: 404 -> kNotFound, 409 -> kConflict, 400 -> kInvalidArgument, other 4xx/5xx ->
// kInternal (503 -> kUnavailable). An unreachable socket is kUnavailable, a call past its
// deadline kTimeout.
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace gpuq::http {

struct DockerOptions {
  std::filesystem::path socket = "/var/run/docker.sock";
  std::chrono::milliseconds timeout{30'000};  // per call, connect to last byte
  // The newest API version this client speaks. The version used is min(this, the engine's
  // maximum); the v1.41 body shapes we use are unchanged up to here. Not lower than 1.44:
  // Docker 29 refuses anything older.
  std::string max_api_version = "1.47";
};

// "unix:///run/docker.sock" (DOCKER_HOST's form) or a plain absolute path -> the socket path.
// kInvalidArgument for tcp:// and anything else.
Result<std::filesystem::path> ParseDockerHost(std::string_view docker_host);

// GET /version, the parts we use.
struct EngineVersion {
  std::string version;          // "4.3.1", "27.3.1"
  std::string api_version;      // the engine's maximum, "1.41"
  std::string min_api_version;  // "" when the engine does not say
  std::string os;
  std::string arch;
};

// GET /containers/{id}/json, the parts we use.
struct ContainerInfo {
  std::string id;
  std::string name;    // without the leading "/"
  std::string image;   // Config.Image
  std::string status;  // created|running|paused|restarting|removing|exited|dead (podman: stopped)
  bool running = false;
  bool oom_killed = false;
  int pid = 0;        // host pid of the container's first process; 0 when not running
  int exit_code = 0;  // meaningful once it ran and stopped
  bool tty = false;   // Config.Tty: logs are raw, not multiplexed
  std::map<std::string, std::string> labels;
};

struct PortBinding {
  std::string container_port;  // "8188/tcp"
  std::string host_ip;         // "127.0.0.1"; "" = all interfaces
  std::string host_port;       // "8188"
};

// HostConfig.DeviceRequests: GPUs for the NVIDIA container toolkit.
struct DeviceRequest {
  std::string driver = "nvidia";
  int count = 0;                        // -1 = all; 0 with device_ids
  std::vector<std::string> device_ids;  // "0", "GPU-8a3f..."; empty with count
  std::vector<std::vector<std::string>> capabilities{{"gpu"}};
};

// POST /containers/create. Empty fields are left out, so the image's defaults apply.
struct ContainerSpec {
  std::string name;  // [a-zA-Z0-9][a-zA-Z0-9_.-]+; "" lets the engine pick one
  std::string image;
  std::vector<std::string> cmd;         // argv; no shell
  std::vector<std::string> entrypoint;  // replaces the image's when not empty
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::vector<std::string> binds;  // "/host:/container[:ro]"
  std::string network_mode;        // "none", "host", "bridge"; "" = engine default
  std::string working_dir;
  std::vector<PortBinding> ports;
  std::vector<DeviceRequest> devices;
  std::optional<long long> shm_size_bytes;
  bool tty = false;
  bool auto_remove = false;
};

// A container's output. Without a TTY, `out` and `err` are the two streams and `all` both in
// the order the engine sent them; with a TTY everything is in `out` and `all`.
struct ContainerLogs {
  std::string out;
  std::string err;
  std::string all;
};

struct LogsOptions {
  int tail = -1;  // last N lines; -1 = all
  bool timestamps = false;
};

// Splits a multiplexed log body (8-byte frame headers [stream, 0, 0, 0, size BE32]) into
// streams. A truncated last frame keeps what arrived. Exposed for tests.
ContainerLogs DemuxLogStream(std::string_view body);

// The JSON body POST /containers/create sends for `spec`. Exposed for tests (GPU device
// requests cannot be tried without the NVIDIA toolkit).
std::string ContainerCreateBody(const ContainerSpec& spec);

// Output of a followed container: `stream` is 1 (stdout) or 2 (stderr); a TTY container's
// output is all stream 1. `bytes` are not aligned to lines.
using OutputSink = std::function<void(int stream, std::string_view bytes)>;

class DockerClient {
 public:
  explicit DockerClient(DockerOptions options);
  ~DockerClient();
  DockerClient(const DockerClient&) = delete;
  DockerClient& operator=(const DockerClient&) = delete;

  const DockerOptions& options() const { return options_; }

  // GET /_ping: the engine answers.
  Result<void> Ping();
  // GET /version (unversioned path).
  Result<EngineVersion> Version();
  // The API version requests use, negotiated on first use (GET /_ping's Api-Version header,
  // or /version) and kept; a failed negotiation is retried by the next call. kUnavailable
  // when the engine's minimum is above max_api_version.
  Result<std::string> ApiVersion();

  // kNotFound when there is no such container.
  Result<ContainerInfo> Inspect(std::string_view name_or_id);
  // Returns the new container's id. kNotFound "image X is missing ..." when the image is not
  // there (the engine does not pull on create); kConflict when the name is taken.
  Result<std::string> Create(const ContainerSpec& spec);
  // 304 (already running) is success. kNotFound when there is no such container.
  Result<void> Start(std::string_view name_or_id);
  // SIGTERM (or the image's stop signal), SIGKILL after `timeout`; blocks until the engine
  // says it stopped (the call's deadline is extended by `timeout`). 304 (already stopped) is
  // success.
  Result<void> Stop(std::string_view name_or_id, std::chrono::seconds timeout);
  // Sends `signal` ("SIGKILL", "SIGTERM", "HUP", "9"). A container that is not running is an
  // error: kConflict from Docker, kInternal from podman.
  Result<void> Kill(std::string_view name_or_id, std::string_view signal = "SIGKILL");
  // `force` removes a running container (kill first). kNotFound when there is none.
  Result<void> Remove(std::string_view name_or_id, bool force = false);
  // The output so far (no follow), demultiplexed unless the container has a TTY.
  Result<ContainerLogs> Logs(std::string_view name_or_id, const LogsOptions& options = {});
  // Polls Inspect every `poll` until the container is not running (podman's transient
  // "stopped" counts as exited) and returns that state; kTimeout after `deadline`;
  // kNotFound when it is gone (removed, e.g. auto_remove). Never uses /wait, which burns a
  // CPU core in podman 4.3 while it blocks.
  Result<ContainerInfo> WaitExited(std::string_view name_or_id, std::chrono::milliseconds deadline,
                                   std::chrono::milliseconds poll = std::chrono::milliseconds(50));
  // GET /containers/json: the containers carrying every label given as "key" or "key=value"
  // (`all`: stopped ones too). Filled: id, name, image, status, running, labels.
  Result<std::vector<ContainerInfo>> List(const std::vector<std::string>& labels, bool all = true);

  // GET /containers/{id}/logs?follow=1: hands the output to `sink` (on the calling thread) as
  // the engine sends it, demultiplexed unless the container has a TTY, until the engine ends
  // the stream because the container stopped. Returns early: kTimeout at `deadline`;
  // kUnavailable "... stopped" once `stop` is requested (the connection is closed at once).
  Result<void> FollowLogs(std::string_view name_or_id, const OutputSink& sink, std::stop_token stop,
                          std::chrono::steady_clock::time_point deadline);
  // POST /images/create?fromImage=REPO&tag=TAG: pulls `image` ("busybox", "repo:tag",
  // "host:5000/repo@sha256:..."), reading the engine's progress stream to its end. A pull the
  // engine or registry refuses (no network, no such image, denied), in the status or in the
  // stream, is kUnavailable with the engine's message. `stop` and `deadline` as FollowLogs.
  Result<void> Pull(std::string_view image, std::stop_token stop,
                    std::chrono::steady_clock::time_point deadline);
  // POST /images/{image}/tag?repo=REPO&tag=TAG: another name for a local image
  // ("docker.io/library/busybox", "latest"). 404 when `image` is not there.
  Result<void> Tag(std::string_view image, std::string_view repo, std::string_view tag);

 private:
  struct Reply;
  // One versioned request whose 2xx body goes to `on_body` as it arrives (a non-2xx body is
  // kept in the Reply instead). Cancelled by `stop`, bounded by `deadline`.
  Result<Reply> StreamCall(std::string_view method, const std::string& target, std::stop_token stop,
                           std::chrono::steady_clock::time_point deadline,
                           const std::function<void(std::string_view)>& on_body);
  // One request on a fresh connection. `versioned` prefixes /v<api>.
  Result<Reply> Call(std::string_view method, const std::string& target, std::string_view body,
                     bool versioned, std::chrono::milliseconds extra_time = {});

  DockerOptions options_;
  struct Negotiated;
  std::unique_ptr<Negotiated> negotiated_;
};

}  // namespace gpuq::http
