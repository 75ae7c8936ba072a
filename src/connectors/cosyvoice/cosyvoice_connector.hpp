#pragma once
// `cosyvoice`: text to speech through the CosyVoice FastAPI runtime (protocols.md section 3), a
// service-bound task type: one multipart POST to an /inference_* endpoint whose chunked body of
// raw PCM (s16le, mono, no header, no sample rate) is written into a WAV file as it arrives.
//
// Settings ([task_types.NAME]):
//   sample_rate     the model's rate, which the server never sends: 22050 (default) for the
//                   CosyVoice-300M family, 24000 for CosyVoice2-0.5B (the server's default model)
//                   and CosyVoice3. A wrong rate plays at the wrong speed and pitch.
//   voices_dir      reference voices: <voices_dir>/<voice_id>.wav (any audio the server reads,
//                   >= 16 kHz) and, for zero_shot, <voice_id>.txt with its transcript.
//                   Default: <asset root>/voices (ASSET_PATH).
//   default_mode    the mode when the payload names none: sft | zero_shot (default) | clone |
//                   instruct | cross_lingual.
//   instruct_api    "instruct2" (default; CosyVoice2/3: /inference_instruct2 with the voice's
//                   prompt wav) or "instruct" (CosyVoice-300M-Instruct only: /inference_instruct
//                   with spk_id = voice_id, a built-in speaker).
//   instruct_text   the instruction when the payload has none (default "Speak naturally and
//                   clearly."). CosyVoice3 needs "<|endofprompt|>" in it.
//
// Payload (the notes' shape plus optional keys): {"text", "voice_id", "mode"?, "output_path"?,
// "instruct_text"?, "prompt_text"?}. Modes and what they send:
//   sft                -> /inference_sft            tts_text, spk_id = voice_id (built-in speaker)
//   zero_shot | clone  -> /inference_zero_shot      tts_text, prompt_text (payload's, else
//                         <voice_id>.txt), prompt_wav = <voice_id>.wav
//   cross_lingual      -> /inference_cross_lingual  tts_text, prompt_wav = <voice_id>.wav
//   instruct           -> /inference_instruct2      tts_text, instruct_text, prompt_wav, or
//                         /inference_instruct       tts_text, spk_id, instruct_text (instruct_api)
// output_path: relative -> inside the run dir (default "audio.wav"); absolute -> must be inside
// the asset root (ConnectorOptions.asset_root). Validate (a 422 at submit) refuses a path that
// leaves either (judged lexically: "..", and at Execute a symlinked folder that leads outside),
// an unknown mode, a voice_id that is not a plain file name, and a voice whose files are
// missing from voices_dir.
//
// Execute: POST multipart/form-data, then the PCM is written to "<output>.part" as it streams
// (an odd trailing byte kept for the next piece) and renamed over the output once the stream
// ended whole, with the RIFF header's sizes filled in. Progress: seconds of audio received
// (no fraction: the server's own sentence split is not knowable). Result: {"output" (relative to
// data_dir when inside it, else absolute), "outside_run_dir", "sample_rate", "duration_s",
// "bytes" (of PCM), "mode", "voice_id"}; the file is in Outcome.files when inside data_dir.
//
// Errors: refused or reset before a reply -> kUnavailable (retried). 422 -> kInvalidArgument
// naming the fields. Another non-2xx -> kInvalidArgument (kUnavailable for 502/503/504) with the
// body's detail. Inference errors arrive after the 200 headers: a body of zero bytes (cut off or
// not) -> kInvalidArgument (an unknown voice, an unreadable prompt wav: retrying will not help);
// a stream cut off after some bytes -> kUnavailable (CUDA OOM, a crash: may recover); silence
// past the timeout -> kTimeout. ctx.stop -> the request is aborted (the server only notices at
// its next write: CosyVoice has no cancel) and kUnavailable "cosyvoice request stopped". Files
// that cannot be written -> kInternal. Thread-safe: one instance serves every worker.
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class CosyVoiceConnector final : public Connector {
 public:
  explicit CosyVoiceConnector(ConnectorOptions options = {}) : options_(std::move(options)) {}

  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  std::vector<SettingProblem> CheckSettings(const TaskType& type) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

 private:
  ConnectorOptions options_;
};

}  // namespace gpuq::connectors
