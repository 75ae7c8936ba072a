#pragma once
// `remotion_render`: renders a video with the Remotion CLI as a child process (protocols.md
// section 5), on the host's CPU worker pool (no service).
//
// Settings ([task_types.NAME]):
//   project_dir   the Remotion project (the render's CWD, where node_modules/ is). Required:
//                 without it a run fails with "set task_types.NAME.project_dir".
//   entry_point   relative to project_dir, or a serve URL; default "src/index.ts".
//   composition   the composition id when the payload names none; default "Main".
//   remotion_bin  the CLI to run: a path (relative ones against project_dir) or a name looked
//                 up in PATH. Default: project_dir/node_modules/.bin/remotion when it exists,
//                 else `npx --no remotion` (npx never installs anything here).
//   codec         --codec: h264 h265 vp8 vp9 mp3 aac wav prores h264-mkv h264-ts gif.
//   concurrency   --concurrency: an integer >= 1, or a percentage string "50%".
//   extra_args    array of strings appended to the command line as-is ("--gl=angle", ...).
//   The type's `env` entries are set in the child's environment (as-is, not templates).
//
// Payload: {"timeline": {width, height, fps, durationInFrames, clips, subtitles, audioSrc,
// bgmSrc, ...}} as the notes have it: the timeline is the composition's input props, written
// unchanged to <run_dir>/props.json (or "props": any object, instead of a timeline).
// Optional: "composition" (id), "output" (file name in the run dir, default "out.mp4"; one
// that would leave the run dir is a 422), "frames" (--frames: 42, "42" or "0-9").
//
// Execute runs `<remotion> render <entry> <composition> <run_dir>/<output>
// --props=<run_dir>/props.json [--codec=C] [--concurrency=N] [--frames=F] --log=info
// [extra_args...]` in project_dir, in its own process group (never a shell). Its output goes
// to the attempt's log; its progress lines become progress (0.3 bundle + 0.6 render + 0.1
// stitch).
//
// Outcome: exit 0, a non-empty output file and a final "Rendered N/N" or "Stitched N/N" ->
// result {"output": "runs/<id>/out.mp4", "frames": N, "duration_s": N / fps (when the props
// have fps), "size_bytes"}, the file listed. Errors, all kInvalidArgument (the run fails for
// good) unless said: no project_dir, or one that is not a directory; Remotion not installed
// (with how to install it); exit code N -> "remotion render exited with code N: <the error
// line of its output>"; exit 0 without the file, with an empty one or without the final
// progress line (the CLI exits 0 on SIGINT); killed by a signal. ctx.stop (cancel, timeout,
// drain) -> the group gets SIGTERM, SIGKILL after `grace`, and kUnavailable "remotion render
// stopped". props.json or the log cannot be written -> kInternal. Thread-safe: one instance
// serves every worker.
#include "connectors/command/child.hpp"
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class RemotionConnector final : public Connector {
 public:
  // `grace`: SIGTERM -> SIGKILL delay on stop. The CLI does not handle SIGTERM (it dies at
  // once) and a render has nothing to save, so it is short.
  explicit RemotionConnector(Millis grace = Millis(500)) : grace_(grace) {}

  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  std::vector<SettingProblem> CheckSettings(const TaskType& type) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

 private:
  Millis grace_;
};

}  // namespace gpuq::connectors
