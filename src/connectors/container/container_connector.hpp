#pragma once
// `container`: one one-shot container per attempt, through the Docker Engine API (Docker, or
// podman's compatible service) on ConnectorOptions::docker_socket.
//
// Settings ([task_types.NAME] keys):
//   image                  the image to run; required unless allow_image_override is set
//   allow_image_override   payload.image may name another image (default false)
//   command                argv template (array of strings, each filled as text); empty or
//                          absent: the image's own CMD
//   allow_command_override payload.command (array of strings) may replace it (default false)
//   env                    (the common task type key) environment templates, filled as text
//   pull                   pull a missing image (default false: a missing image fails the run)
//   name_prefix            container name prefix (default "gpuq")
//   network                NetworkMode (default "bridge"; "none" cuts the container off)
//   mounts                 extra binds, "/host/path:/container/path[:ro|rw]"
//   workdir                where the run dir is bound, read-write (default "/run/gpuq"); also
//                          the working directory
//   shm_size_mb            /dev/shm size (default: the engine's)
//   keep                   leave the container behind after the run (default false)
// Templates name the payload's top-level keys, "payload", "run_id", "attempt", "run_dir" (the
// workdir inside the container) and "data_dir". payload.env (an object of strings) adds
// variables; the type's env wins over it. GPUQ_RUN_ID, GPUQ_RUN_DIR and GPUQ_ATTEMPT are
// always set.
//
// Execute: the container `<prefix>_<type>_<first 8 of run id>` (a leftover of an earlier
// attempt of the same run is removed first) carries the labels gpuq.run, gpuq.type,
// gpuq.attempt and gpuq.managed=true, and asks for the run's GPU (DeviceIDs [uuid], driver
// nvidia) only when ctx.gpu_uuid is set. Its stdout and stderr are appended to the attempt's
// log as they come. Exit 0 -> result {container, image, exit_code, files} and the run dir's
// files (logs/ excepted) as Outcome.files. Exit N -> kInvalidArgument "container X exited with
// code N; last lines: ..." (OOMKilled says so). ctx.stop -> SIGKILL, kUnavailable "container
// stopped"; past run.timeout_s -> SIGKILL, kTimeout. The container is removed afterwards
// whatever happened, unless `keep`. A missing image with pull = false -> kInvalidArgument; an
// unreachable engine or a failed pull -> kUnavailable (retried).
// Thread-safe: one instance serves every worker.
#include <memory>

#include "connectors/connector.hpp"
#include "http/docker_client.hpp"

namespace gpuq::connectors {

struct ContainerSettings {
  std::string image;
  bool allow_image_override = false;
  std::vector<std::string> command;
  bool allow_command_override = false;
  bool pull = false;
  std::string name_prefix = "gpuq";
  std::string network = "bridge";
  std::vector<std::string> mounts;
  std::string workdir = "/run/gpuq";
  std::optional<long long> shm_size_mb;
  bool keep = false;
};

// The type's settings, or one problem per bad key.
Result<ContainerSettings> ParseContainerSettings(const TaskType& type,
                                                 std::vector<SettingProblem>* problems = nullptr);

// "<prefix>_<type>_<first 8 of run id>", every character outside [a-zA-Z0-9_.-] made '_'.
std::string ContainerName(std::string_view prefix, std::string_view type, std::string_view run_id);

// What one attempt's container is made of. Pure.
struct ContainerRun {
  std::string run_id;
  int attempt = 1;
  std::filesystem::path run_dir;   // host path, bound at settings.workdir
  std::filesystem::path data_dir;  // host path
  std::string gpu_uuid;            // "" = no GPU request
};
Result<http::ContainerSpec> BuildContainerSpec(const TaskType& type,
                                               const ContainerSettings& settings,
                                               const Json& payload, const ContainerRun& run);

class ContainerConnector final : public Connector {
 public:
  explicit ContainerConnector(const ConnectorOptions& options);
  ~ContainerConnector() override;

  std::vector<SettingProblem> CheckSettings(const TaskType& type) const override;
  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

 private:
  std::unique_ptr<http::DockerClient> docker_;
};

}  // namespace gpuq::connectors
