#include "connectors/cosyvoice/cosyvoice_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "connectors/fake_service.hpp"
#include "connectors/run_fixture.hpp"
#include "http/client.hpp"
#include "http/multipart.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

namespace fs = std::filesystem;
using testing::FreePort;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::TempDir;

// The fake's synthesis: (code points of a sentence) x (rate / 20) samples at its default rate.
constexpr size_t kSamplesPerChar = 22050 / 20;

std::vector<std::string> CosyVoiceFlags(std::vector<std::string> extra = {}) {
  std::vector<std::string> flags = {"--personality", "cosyvoice"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

TaskType CosyType(Json settings = Json::object()) {
  TaskType type = MakeType("tts", "cosyvoice");
  type.service = "cosyvoice";
  type.settings = std::move(settings);
  return type;
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

uint32_t U32(const std::string& bytes, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
  return v;
}
uint16_t U16(const std::string& bytes, size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(bytes[at]) |
                               static_cast<unsigned char>(bytes[at + 1]) << 8);
}

// A mono s16le WAV of `samples` silent samples.
std::string Wav(uint32_t rate, uint32_t samples) {
  std::string out = "RIFF";
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i) & 0xFF);
  };
  auto u16 = [&](uint16_t v) {
    out += static_cast<char>(v & 0xFF);
    out += static_cast<char>(v >> 8);
  };
  u32(36 + samples * 2);
  out += "WAVEfmt ";
  u32(16);
  u16(1);
  u16(1);
  u32(rate);
  u32(rate * 2);
  u16(2);
  u16(16);
  out += "data";
  u32(samples * 2);
  out += std::string(samples * 2, '\0');
  return out;
}

// A voices dir: luna (16 kHz wav + transcript), nova (wav, no transcript), low (8 kHz: the
// server cannot use it), noise (not audio).
class Voices {
 public:
  Voices() {
    WriteFile(dir_ / "luna.wav", Wav(16000, 1600));
    WriteFile(dir_ / "luna.txt", "Hello, this is Luna speaking.\n");
    WriteFile(dir_ / "nova.wav", Wav(22050, 2205));
    WriteFile(dir_ / "low.wav", Wav(8000, 800));
    WriteFile(dir_ / "low.txt", "Low.");
    WriteFile(dir_ / "noise.wav", "this is not audio at all");
    WriteFile(dir_ / "noise.txt", "Noise.");
  }
  std::string path() const { return dir_.path().string(); }

 private:
  TempDir dir_;
};

struct CosyRun {
  explicit CosyRun(Json payload, TaskType type = CosyType(), ConnectorOptions options = {})
      : fixture(std::move(payload), std::move(type)), connector(std::move(options)) {}

  Result<Outcome> Execute(const std::string& url) {
    RunContext ctx = fixture.Context();
    ctx.service_url = url;
    ctx.gpu = 0;
    return connector.Execute(ctx);
  }

  RunFixture fixture;
  CosyVoiceConnector connector;
};

// Checks the WAV at `path`: a 44-byte header that matches `samples` at `rate`.
void ExpectWav(const fs::path& path, uint32_t rate, size_t samples) {
  std::string bytes = ReadBytes(path);
  ASSERT_EQ(bytes.size(), 44 + samples * 2) << path;
  EXPECT_EQ(bytes.substr(0, 4), "RIFF");
  EXPECT_EQ(U32(bytes, 4), 36 + samples * 2);
  EXPECT_EQ(bytes.substr(8, 8), "WAVEfmt ");
  EXPECT_EQ(U32(bytes, 16), 16u);
  EXPECT_EQ(U16(bytes, 20), 1);  // PCM
  EXPECT_EQ(U16(bytes, 22), 1);  // mono
  EXPECT_EQ(U32(bytes, 24), rate);
  EXPECT_EQ(U32(bytes, 28), rate * 2);
  EXPECT_EQ(U16(bytes, 32), 2);
  EXPECT_EQ(U16(bytes, 34), 16);
  EXPECT_EQ(bytes.substr(36, 4), "data");
  EXPECT_EQ(U32(bytes, 40), samples * 2);
  EXPECT_EQ(U32(bytes, 40) % 2, 0u);
  // The fake's tone, not silence.
  bool any = false;
  for (size_t i = 44; i < bytes.size() && !any; ++i) any = bytes[i] != 0;
  EXPECT_TRUE(any);
}

bool NoPartialFiles(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().extension() == ".part") return false;
  }
  return true;
}

// --- The fake itself ---------------------------------------------------------------------------

TEST(CosyVoiceFake, AnswersTheFastApiHealthRoutes) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint());

  auto docs = client.Get("/docs");
  auto openapi = client.Get("/openapi.json");

  ASSERT_TRUE(docs && openapi);
  EXPECT_EQ(docs.value().status, 200);
  EXPECT_EQ(openapi.value().status, 200);
  EXPECT_TRUE(Json::parse(openapi.value().body)["paths"].contains("/inference_zero_shot"));
}

TEST(CosyVoiceFake, StreamsHeaderlessPcmForAnUrlEncodedGet) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint());

  // The sample client's way: a GET with a form body. "Hi." and "Yo!" are 3 code points each.
  auto reply = client.Request("GET", "/inference_sft",
                              "tts_text=Hi.+Yo%21&spk_id=%E8%8B%B1%E6%96%87%E5%A5%B3",
                              "application/x-www-form-urlencoded");

  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply.value().status, 200);
  EXPECT_EQ(reply.value().body.size(), 6 * kSamplesPerChar * 2);
  EXPECT_FALSE(reply.value().headers.contains("content-type"));
  EXPECT_EQ(reply.value().headers["transfer-encoding"], "chunked");
}

TEST(CosyVoiceFake, MissingFieldsAre422WithFastApiDetail) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint());
  // prompt_wav sent as text, prompt_text empty (FastAPI: missing), tts_text fine.
  auto form = http::EncodeForm({{.name = "tts_text", .value = "Hello."},
                                {.name = "prompt_text", .value = ""},
                                {.name = "prompt_wav", .value = "not a file"}});

  auto reply = client.Request("POST", "/inference_zero_shot", form.body, form.content_type);

  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply.value().status, 422);
  Json detail = Json::parse(reply.value().body)["detail"];
  ASSERT_EQ(detail.size(), 2u);
  EXPECT_EQ(detail[0]["type"], "missing");
  EXPECT_EQ(detail[0]["loc"], Json({"body", "prompt_text"}));
  EXPECT_EQ(detail[1]["loc"], Json({"body", "prompt_wav"}));
}

// --- Each mode ---------------------------------------------------------------------------------

TEST(CosyVoiceConnector, SftWritesAWavOfEverySentence) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // Two sentences of 12 code points each, each sent by the fake as two odd-length chunks.
  CosyRun run(Json{{"text", "Hello there. How are you?"}, {"voice_id", "英文女"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  size_t samples = 24 * kSamplesPerChar;
  fs::path wav = run.fixture.run_dir() / "audio.wav";
  ExpectWav(wav, 22050, samples);
  const Json& result = outcome.value().result;
  EXPECT_EQ(result["output"], "runs/" + run.fixture.run().id + "/audio.wav");
  EXPECT_EQ(result["bytes"], samples * 2);
  EXPECT_EQ(result["sample_rate"], 22050);
  EXPECT_DOUBLE_EQ(result["duration_s"].get<double>(), samples / 22050.0);
  EXPECT_EQ(result["outside_run_dir"], false);
  EXPECT_EQ(outcome.value().files,
            std::vector<std::string>{"runs/" + run.fixture.run().id + "/audio.wav"});
  EXPECT_TRUE(NoPartialFiles(run.fixture.run_dir()));
  EXPECT_THAT(run.fixture.Log(), HasSubstr("/inference_sft"));
  EXPECT_FALSE(run.fixture.progress().empty());  // 1.2 s of audio: progress at 0.5 s and 1.0 s
}

TEST(CosyVoiceConnector, ZeroShotSendsTheVoiceAndItsTranscriptAtTheConfiguredRate) {
  Voices voices;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // CosyVoice2/3 speak at 24000 Hz; the server never says so.
  CosyRun run(Json{{"text", "你好。世界！"}, {"voice_id", "luna"}, {"mode", "zero_shot"}},
              CosyType({{"voices_dir", voices.path()}, {"sample_rate", 24000}}));

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(run.fixture.run_dir() / "audio.wav", 24000, 6 * kSamplesPerChar);
  EXPECT_EQ(outcome.value().result["mode"], "zero_shot");
  EXPECT_THAT(run.fixture.Log(), HasSubstr("/inference_zero_shot"));
}

TEST(CosyVoiceConnector, CloneIsZeroShotAndTakesThePayloadsPromptText) {
  Voices voices;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // nova has no transcript file: the payload gives it.
  CosyRun run(Json{{"text", "Clone me."},
                   {"voice_id", "nova"},
                   {"mode", "clone"},
                   {"prompt_text", "Nova's words."}},
              CosyType({{"voices_dir", voices.path()}}));

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(run.fixture.run_dir() / "audio.wav", 22050, 9 * kSamplesPerChar);
}

TEST(CosyVoiceConnector, InstructUsesInstruct2WithTheVoiceByDefault) {
  Voices voices;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // The notes' payload: no instruct_text, so the setting's default is sent.
  CosyRun run(Json{{"text", "Script to speak."},
                   {"voice_id", "luna"},
                   {"mode", "instruct"},
                   {"output_path", "audio/output.wav"}},
              CosyType({{"voices_dir", voices.path()}}));

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(run.fixture.run_dir() / "audio" / "output.wav", 22050, 16 * kSamplesPerChar);
  EXPECT_EQ(outcome.value().files,
            std::vector<std::string>{"runs/" + run.fixture.run().id + "/audio/output.wav"});
  EXPECT_THAT(run.fixture.Log(), HasSubstr("/inference_instruct2"));
}

TEST(CosyVoiceConnector, InstructV1SendsTheSpeakerAndInstruction) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Calmly."},
                   {"voice_id", "中文男"},
                   {"mode", "instruct"},
                   {"instruct_text", "A calm narrator."}},
              CosyType({{"instruct_api", "instruct"}}));

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(run.fixture.run_dir() / "audio.wav", 22050, 7 * kSamplesPerChar);
  EXPECT_THAT(run.fixture.Log(), HasSubstr("/inference_instruct "));
}

TEST(CosyVoiceConnector, CrossLingualSendsTheVoice) {
  Voices voices;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Bonjour."}, {"voice_id", "nova"}, {"mode", "cross_lingual"}},
              CosyType({{"voices_dir", voices.path()}}));

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(run.fixture.run_dir() / "audio.wav", 22050, 8 * kSamplesPerChar);
}

TEST(CosyVoiceConnector, DefaultModeComesFromTheSettings) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "A. B! C?"}, {"voice_id", "luna"}},
              CosyType({{"default_mode", "sft"}}));

  auto outcome = run.Execute(fake.url());

  // Three sentences of 2 code points: 4408 bytes each, sent as chunks of 2205 and 2203 bytes.
  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(run.fixture.run_dir() / "audio.wav", 22050, 6 * kSamplesPerChar);
}

TEST(CosyVoiceConnector, OutputInTheAssetRootIsListedInTheResultOnly) {
  TempDir assets;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  std::string wanted = (assets.path() / "voice" / "out.wav").string();
  CosyRun run(
      Json{{"text", "Asset."}, {"voice_id", "luna"}, {"mode", "sft"}, {"output_path", wanted}},
      CosyType(), ConnectorOptions{.asset_root = assets.path()});

  auto outcome = run.Execute(fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  ExpectWav(wanted, 22050, 6 * kSamplesPerChar);
  EXPECT_EQ(outcome.value().result["output"], wanted);
  EXPECT_EQ(outcome.value().result["outside_run_dir"], true);
  EXPECT_THAT(outcome.value().files, IsEmpty());
}

// --- Failures ----------------------------------------------------------------------------------

TEST(CosyVoiceConnector, EmptyBodyFailsForGood) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Nothing FAKE_EMPTY."}, {"voice_id", "luna"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("no audio"));
  EXPECT_FALSE(fs::exists(run.fixture.run_dir() / "audio.wav"));
  EXPECT_TRUE(NoPartialFiles(run.fixture.run_dir()));
}

TEST(CosyVoiceConnector, UnknownSpeakerIsAZeroByteCutAndFailsForGood) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Who am I?"}, {"voice_id", "nobody"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("after 0 bytes"));
  EXPECT_THAT(outcome.error().message, HasSubstr("nobody"));
  EXPECT_TRUE(NoPartialFiles(run.fixture.run_dir()));
}

TEST(CosyVoiceConnector, PromptWavTheServerCannotUseFailsForGood) {
  Voices voices;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  for (const char* voice : {"low", "noise"}) {
    CosyRun run(Json{{"text", "Hi."}, {"voice_id", voice}, {"mode", "zero_shot"}},
                CosyType({{"voices_dir", voices.path()}}));

    auto outcome = run.Execute(fake.url());

    ASSERT_FALSE(outcome) << voice;
    EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument) << outcome.error().message;
  }
}

TEST(CosyVoiceConnector, StreamCutMidSynthesisIsRetried) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // "One." (4 code points) whole, then the odd first half of "Two FAKE_CUT." (13).
  CosyRun run(Json{{"text", "One. Two FAKE_CUT. Three."}, {"voice_id", "luna"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  size_t second = 13 * kSamplesPerChar * 2;
  size_t sent = 4 * kSamplesPerChar * 2 + second / 4 * 2 + 1;
  EXPECT_THAT(outcome.error().message,
              HasSubstr(fmt::format("ended the stream after {} bytes", sent)));
  EXPECT_FALSE(fs::exists(run.fixture.run_dir() / "audio.wav"));
  EXPECT_TRUE(NoPartialFiles(run.fixture.run_dir()));
}

TEST(CosyVoiceConnector, ServerFaultModeCutsEveryStream) {
  FakeService fake(CosyVoiceFlags({"--fault", "cut"}));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Only one sentence."}, {"voice_id", "luna"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("mid-synthesis"));
}

TEST(CosyVoiceConnector, Server422NamesTheFields) {
  Voices voices;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "FAKE_422."}, {"voice_id", "luna"}},
              CosyType({{"voices_dir", voices.path()}}));

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("422"));
  EXPECT_THAT(outcome.error().message, HasSubstr("prompt_wav: Field required"));
}

TEST(CosyVoiceConnector, Server500FailsWithItsBody) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Boom FAKE_500."}, {"voice_id", "luna"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("replied 500: Internal Server Error"));
}

TEST(CosyVoiceConnector, ServerDownIsUnavailable) {
  CosyRun run(Json{{"text", "Anyone?"}, {"voice_id", "luna"}, {"mode", "sft"}});

  auto outcome = run.Execute(fmt::format("http://127.0.0.1:{}", FreePort()));

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_TRUE(NoPartialFiles(run.fixture.run_dir()));
}

TEST(CosyVoiceConnector, ConnectionResetBeforeAReplyIsUnavailable) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Crash FAKE_DROP."}, {"voice_id", "luna"}, {"mode", "sft"}});

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST(CosyVoiceConnector, SilenceLongerThanTheTimeoutIsATimeout) {
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{{"text", "Wait FAKE_STALL."}, {"voice_id", "luna"}, {"mode", "sft"}});
  gpuq::Run quick = run.fixture.run();
  quick.timeout_s = 1;  // the socket deadline follows the run's timeout
  RunContext base = run.fixture.Context();
  RunContext ctx{.run = quick,
                 .task_type = base.task_type,
                 .data_dir = base.data_dir,
                 .run_dir = base.run_dir,
                 .log_file = base.log_file,
                 .service_url = fake.url(),
                 .gpu = 0,
                 .gpu_uuid = {},
                 .stop = base.stop,
                 .report_progress = base.report_progress};

  auto outcome = run.connector.Execute(ctx);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kTimeout) << outcome.error().message;
}

TEST(CosyVoiceConnector, StopAbortsMidStreamWithinASecond) {
  FakeService fake(CosyVoiceFlags({"--work-ms", "300"}));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  std::string text;
  for (int i = 0; i < 30; ++i) text += "This sentence is one second long. ";
  CosyRun run(Json{{"text", text}, {"voice_id", "luna"}, {"mode", "sft"}});
  auto result = std::async(std::launch::async, [&] { return run.Execute(fake.url()); });
  ASSERT_TRUE(testing::WaitUntil([&] { return !run.fixture.progress().empty(); }));

  auto stop_at = std::chrono::steady_clock::now();
  run.fixture.stop().request_stop();
  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto took = std::chrono::steady_clock::now() - stop_at;

  EXPECT_LT(took, std::chrono::seconds(1));
  auto outcome = result.get();
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("stopped"));
  EXPECT_FALSE(fs::exists(run.fixture.run_dir() / "audio.wav"));
  EXPECT_TRUE(NoPartialFiles(run.fixture.run_dir()));
  // The fake saw the client go.
  EXPECT_TRUE(
      testing::WaitUntil([&] { return fake.Output().find("client gone") != std::string::npos; }));
}

TEST(CosyVoiceConnector, OutputThroughASymlinkOutOfTheRunDirFails) {
  TempDir elsewhere;
  FakeService fake(CosyVoiceFlags());
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  CosyRun run(Json{
      {"text", "Hi."}, {"voice_id", "luna"}, {"mode", "sft"}, {"output_path", "link/out.wav"}});
  fs::create_directory_symlink(elsewhere.path(), run.fixture.run_dir() / "link");

  auto outcome = run.Execute(fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("symlink"));
  EXPECT_TRUE(fs::is_empty(elsewhere.path()));
}

// --- Validate and settings ---------------------------------------------------------------------

TEST(CosyVoiceConnector, ValidateAcceptsOutputsInsideTheRunDirOrAssetRoot) {
  Voices voices;
  CosyVoiceConnector connector(ConnectorOptions{.asset_root = "/srv/assets"});
  TaskType type = CosyType({{"voices_dir", voices.path()}});
  Json base = {{"text", "Hi."}, {"voice_id", "luna"}, {"mode", "clone"}};

  for (std::string path : {"", "out.wav", "audio/output.wav", "a/../b.wav", "./c.wav",
                           "/srv/assets/audio/x.wav", "/srv/assets/../assets/y.wav"}) {
    Json payload = base;
    if (!path.empty()) payload["output_path"] = path;
    auto valid = connector.Validate(type, payload);
    EXPECT_TRUE(valid) << path << ": " << valid.error().message;
  }
}

TEST(CosyVoiceConnector, ValidateRefusesOutputsThatLeave) {
  CosyVoiceConnector connector(ConnectorOptions{.asset_root = "/srv/assets"});
  CosyVoiceConnector no_assets;
  Json base = {{"text", "Hi."}, {"voice_id", "luna"}, {"mode", "sft"}};

  for (std::string path : {"../x.wav", "a/../../x.wav", "..", ".", "audio/", "/etc/x.wav",
                           "/srv/assets/../etc/x.wav", "/srv/assets", "/srv/assetsX/y.wav"}) {
    Json payload = base;
    payload["output_path"] = path;
    auto valid = connector.Validate(CosyType(), payload);
    ASSERT_FALSE(valid) << path;
    EXPECT_EQ(valid.error().code, Errc::kInvalidArgument);
    EXPECT_THAT(valid.error().message, HasSubstr("output_path"));
  }
  Json absolute = base;
  absolute["output_path"] = "/srv/assets/x.wav";
  auto valid = no_assets.Validate(CosyType(), absolute);
  ASSERT_FALSE(valid);
  EXPECT_THAT(valid.error().message, HasSubstr("asset root"));
}

TEST(CosyVoiceConnector, ValidateRefusesBadPayloadsAndMissingVoices) {
  Voices voices;
  CosyVoiceConnector connector;
  TaskType type = CosyType({{"voices_dir", voices.path()}});
  struct Case {
    Json payload;
    std::string says;
  };
  std::vector<Case> cases = {
      {Json::array(), "JSON object"},
      {{{"voice_id", "luna"}}, "payload.text"},
      {{{"text", ""}, {"voice_id", "luna"}}, "payload.text"},
      {{{"text", "Hi."}}, "voice_id"},
      {{{"text", "Hi."}, {"voice_id", "luna"}, {"mode", "sing"}}, "mode"},
      {{{"text", "Hi."}, {"voice_id", "luna"}, {"output_path", 3}}, "output_path"},
      {{{"text", "Hi."}, {"voice_id", "ghost"}, {"mode", "clone"}}, "ghost"},
      {{{"text", "Hi."}, {"voice_id", "../luna"}, {"mode", "clone"}}, "plain voice name"},
      {{{"text", "Hi."}, {"voice_id", "nova"}, {"mode", "zero_shot"}}, "transcript"},
  };
  for (const auto& c : cases) {
    auto valid = connector.Validate(type, c.payload);
    ASSERT_FALSE(valid) << c.payload.dump();
    EXPECT_EQ(valid.error().code, Errc::kInvalidArgument);
    EXPECT_THAT(valid.error().message, HasSubstr(c.says)) << c.payload.dump();
  }
  // Without voices_dir, only modes with a built-in speaker work.
  auto valid = connector.Validate(CosyType(), Json{{"text", "Hi."}, {"voice_id", "luna"}});
  ASSERT_FALSE(valid);
  EXPECT_THAT(valid.error().message, HasSubstr("voices_dir"));
  EXPECT_TRUE(connector.Validate(CosyType(),
                                 Json{{"text", "Hi."}, {"voice_id", "中文女"}, {"mode", "sft"}}));
}

TEST(CosyVoiceConnector, CheckSettingsNamesBadKeys) {
  CosyVoiceConnector connector;
  auto problems = connector.CheckSettings(CosyType({{"sample_rate", "fast"},
                                                    {"default_mode", "sing"},
                                                    {"instruct_api", "v3"},
                                                    {"voices", "/x"}}));

  std::vector<std::string> keys;
  for (const auto& p : problems) keys.push_back(p.key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("sample_rate", "default_mode", "instruct_api",
                                                    "voices"));
  EXPECT_THAT(connector.CheckSettings(CosyType({{"sample_rate", 24000},
                                                {"voices_dir", "/v"},
                                                {"default_mode", "clone"},
                                                {"instruct_api", "instruct2"},
                                                {"instruct_text", "Softly.<|endofprompt|>"}})),
              IsEmpty());
}

}  // namespace
}  // namespace gpuq::connectors
