#include "connectors/remotion/remotion_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "connectors/run_fixture.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

std::string FakeRemotion() { return (fs::path(GPUQ_BINARY_DIR) / "gpuq-fake-remotion").string(); }

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const fs::path& path, const std::string& text, bool executable = false) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
  if (executable) fs::permissions(path, fs::perms::owner_all, fs::perm_options::add);
}

// The notes' remotion_render payload.
Json Timeline(int frames = 60) {
  return Json{{"width", 1080},
              {"height", 1920},
              {"fps", 30},
              {"durationInFrames", frames},
              {"clips", Json::array({Json{{"src", "clips/a.mp4"}, {"from", 0}}})},
              {"subtitles", Json::array({Json{{"text", "hello"}, {"from", 0}, {"to", 30}}})},
              {"audioSrc", "audio/voice.wav"},
              {"bgmSrc", "audio/bgm.mp3"}};
}

// A Remotion project folder (with its entry point) and a task type that renders it with the
// fake CLI, told how to behave through the type's env.
class Project {
 public:
  Project() { WriteFile(dir_ / "src/index.ts", "// entry\n"); }

  TaskType Type(std::map<std::string, std::string> env = {}, Json settings = Json::object()) {
    TaskType type = MakeType("remotion_render", "remotion_render", {}, std::move(env));
    type.settings = Json{{"project_dir", dir_.path().string()}, {"remotion_bin", FakeRemotion()}};
    type.settings.update(settings);
    return type;
  }

  const fs::path& dir() const { return dir_.path(); }

 private:
  testing::TempDir dir_;
};

std::map<std::string, std::string> Mode(const std::string& mode) {
  return {{"FAKE_REMOTION_MODE", mode}, {"FAKE_REMOTION_FRAME_MS", "0"}};
}

std::vector<double> Fractions(const std::vector<Progress>& progress) {
  std::vector<double> out;
  for (const auto& p : progress) out.push_back(p.fraction.value_or(-1));
  return out;
}

// Processes (not zombies) in process group `pgid`, from /proc.
int GroupMembers(pid_t pgid) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::string stat = ReadFile(entry.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 1));
    char state = 0;
    long ppid = 0, group = 0;
    if (fields >> state >> ppid >> group && group == pgid && state != 'Z') ++count;
  }
  return count;
}

struct Pids {
  pid_t leader = 0, pgid = 0, child = 0;
};

Pids WaitForPids(const fs::path& file) {
  Pids pids;
  EXPECT_TRUE(testing::WaitUntil([&] {
    std::ifstream in(file);
    return static_cast<bool>(in >> pids.leader >> pids.pgid >> pids.child);
  })) << file;
  return pids;
}

TEST(RemotionConnector, RendersTheTimelineIntoAnMp4InTheRunDir) {
  Project project;
  testing::TempDir scratch;
  auto env = Mode("ok");
  env["FAKE_REMOTION_ARGS_FILE"] = (scratch / "args.json").string();
  RunFixture fixture(Json{{"timeline", Timeline(60)}}, project.Type(env));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log();
  std::string output = "runs/" + fixture.run().id + "/out.mp4";
  fs::path file = fixture.run_dir() / "out.mp4";
  EXPECT_EQ(outcome.value().result, (Json{{"output", output},
                                          {"frames", 60},
                                          {"duration_s", 2.0},
                                          {"size_bytes", fs::file_size(file)}}));
  EXPECT_THAT(outcome.value().files, ElementsAre(output));
  EXPECT_EQ(ReadFile(file).substr(4, 8), "ftypisom");
  EXPECT_EQ(Json::parse(ReadFile(fixture.run_dir() / "props.json")), Timeline(60));
  Json args = Json::parse(ReadFile(scratch / "args.json"));
  EXPECT_EQ(args["cwd"], project.dir().string());
  EXPECT_EQ(args["argv"],
            (Json{"render", "src/index.ts", "Main", file.string(),
                  "--props=" + (fixture.run_dir() / "props.json").string(), "--log=info"}));
  EXPECT_THAT(fixture.Log(), AllOf(HasSubstr("Bundling 50%"), HasSubstr("Rendered 60/60"),
                                   HasSubstr("Stitched 60/60")));
}

TEST(RemotionConnector, ProgressRisesThroughBundleRenderAndStitchToOne) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(20)}}, project.Type(Mode("ok")));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_TRUE(outcome) << outcome.error().message;
  auto progress = fixture.progress();
  auto fractions = Fractions(progress);
  ASSERT_GE(fractions.size(), 3u);
  EXPECT_TRUE(std::is_sorted(fractions.begin(), fractions.end()));
  EXPECT_DOUBLE_EQ(fractions.front(), 0.0);                 // Bundling 0%
  EXPECT_THAT(fractions, Contains(DoubleNear(0.3, 1e-9)));  // Bundling 100%
  EXPECT_THAT(fractions, Contains(DoubleNear(0.9, 1e-9)));  // Rendered 20/20
  EXPECT_DOUBLE_EQ(fractions.back(), 1.0);
  EXPECT_EQ(progress.back().message, "rendered 20 frames");
  std::vector<std::string> messages;
  for (const auto& p : progress) messages.push_back(p.message);
  EXPECT_THAT(messages, Contains("rendering 10/20"));
  EXPECT_THAT(messages, Contains("stitching 20/20"));
}

TEST(RemotionConnector, ReadsTheOlderRenderingAndStitchingLines) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(10)}}, project.Type(Mode("old-style")));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome.value().result["frames"], 10);
  auto fractions = Fractions(fixture.progress());
  EXPECT_TRUE(std::is_sorted(fractions.begin(), fractions.end()));
  EXPECT_THAT(fractions, Contains(DoubleNear(0.9, 1e-9)));
  EXPECT_THAT(fixture.Log(), HasSubstr("Rendering 10/10"));
}

TEST(RemotionConnector, PassesCompositionOutputFramesAndSettingsToTheCli) {
  Project project;
  testing::TempDir scratch;
  auto env = Mode("ok");
  env["FAKE_REMOTION_ARGS_FILE"] = (scratch / "args.json").string();
  env["FAKE_REMOTION_COMPOSITIONS"] = "Main,Short";
  TaskType type = project.Type(env, Json{{"codec", "vp9"},
                                         {"concurrency", "50%"},
                                         {"extra_args", Json{"--gl=angle", "--muted"}},
                                         {"entry_point", "src/index.ts"}});
  RunFixture fixture(Json{{"timeline", Timeline()},
                          {"composition", "Short"},
                          {"output", "video/final.webm"},
                          {"frames", "0-9"}},
                     type);
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log();
  fs::path file = fixture.run_dir() / "video/final.webm";
  EXPECT_EQ(outcome.value().result["output"], "runs/" + fixture.run().id + "/video/final.webm");
  EXPECT_EQ(outcome.value().result["frames"], 10);
  EXPECT_GT(fs::file_size(file), 0u);
  Json args = Json::parse(ReadFile(scratch / "args.json"));
  EXPECT_EQ(args["argv"],
            (Json{"render", "src/index.ts", "Short", file.string(),
                  "--props=" + (fixture.run_dir() / "props.json").string(), "--codec=vp9",
                  "--concurrency=50%", "--frames=0-9", "--log=info", "--gl=angle", "--muted"}));
}

TEST(RemotionConnector, CompositionSettingIsTheDefault) {
  Project project;
  auto env = Mode("ok");
  env["FAKE_REMOTION_COMPOSITIONS"] = "Vertical";
  RunFixture fixture(Json{{"timeline", Timeline(5)}},
                     project.Type(env, Json{{"composition", "Vertical"}}));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_TRUE(outcome) << outcome.error().message;
}

TEST(RemotionConnector, AFailedRenderSaysWhatWentWrong) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(10)}}, project.Type(Mode("fail")));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(outcome.error().message,
            "remotion render exited with code 1: Error: could not load clip "
            "\"clips/missing.mp4\" (404 Not Found)");
  EXPECT_THAT(fixture.Log(), AllOf(HasSubstr("An error occurred while rendering frame 5"),
                                   HasSubstr("at Clip (")));
}

TEST(RemotionConnector, AnUnknownCompositionFailsWithTheCliMessage) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(5)}, {"composition", "Square"}},
                     project.Type(Mode("ok")));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message,
              HasSubstr("exited with code 1: Error: Could not find composition with ID Square"));
}

TEST(RemotionConnector, ExitZeroWithoutAnOutputFileFails) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, project.Type(Mode("no-output")));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(outcome.error().message, "remotion render exited 0 but wrote no out.mp4");
  EXPECT_THAT(fixture.Log(), HasSubstr("remotion render exited 0 but wrote no out.mp4"));
}

TEST(RemotionConnector, ExitZeroBeforeTheLastFrameFails) {
  Project project;  // what the CLI does on SIGINT: exit 0 with a partial file
  RunFixture fixture(Json{{"timeline", Timeline(10)}}, project.Type(Mode("partial")));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("exited 0 before its last frame"));
}

TEST(RemotionConnector, AStaleOutputOfAnEarlierAttemptDoesNotCount) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, project.Type(Mode("no-output")));
  WriteFile(fixture.run_dir() / "out.mp4", "left by attempt 1");
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("wrote no out.mp4"));
}

TEST(RemotionConnector, AMissingRemotionBinSaysHowToInstallRemotion) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(5)}},
                     project.Type({}, Json{{"remotion_bin", "node_modules/.bin/remotion"}}));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(
      outcome.error().message,
      AllOf(StartsWith("Remotion is not installed"),
            HasSubstr("npm i --save-exact remotion @remotion/cli` in " + project.dir().string()),
            HasSubstr("task_types.remotion_render.remotion_bin")));
}

TEST(RemotionConnector, NoLocalCliAndNoNpxSaysHowToInstallRemotion) {
  Project project;
  testing::TempDir empty_path;
  TaskType type = project.Type({{"PATH", empty_path.path().string()}});
  type.settings.erase("remotion_bin");
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, type);
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message,
              AllOf(HasSubstr("no npx on PATH"), HasSubstr("npm i --save-exact remotion")));
}

TEST(RemotionConnector, ACliWhoseInterpreterIsMissingSaysHowToInstallRemotion) {
  Project project;  // node_modules/.bin/remotion is a node script; node is not installed
  WriteFile(project.dir() / "node_modules/.bin/remotion", "#!/nonexistent/node\n", true);
  TaskType type = project.Type();
  type.settings.erase("remotion_bin");
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, type);
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message,
              AllOf(HasSubstr("No such file or directory"), HasSubstr("npm i --save-exact")));
}

TEST(RemotionConnector, UsesTheProjectsOwnCliByDefault) {
  Project project;
  fs::create_directories(project.dir() / "node_modules/.bin");
  fs::create_symlink(FakeRemotion(), project.dir() / "node_modules/.bin/remotion");
  TaskType type = project.Type(Mode("ok"));
  type.settings.erase("remotion_bin");
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, type);
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_THAT(fixture.Log(),
              HasSubstr((project.dir() / "node_modules/.bin/remotion").string() + " render"));
}

TEST(RemotionConnector, FallsBackToNpxWithoutLettingItInstall) {
  Project project;
  testing::TempDir bin;
  // npm's answer when `npx --no` finds no remotion package.
  WriteFile(bin / "npx",
            "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/npx-args\"\n"
            "echo 'npm error npx canceled due to missing packages and no YES option: "
            "[\"remotion@4.0.0\"]' >&2\nexit 1\n",
            true);
  TaskType type = project.Type({{"PATH", bin.path().string() + ":/usr/bin:/bin"}});
  type.settings.erase("remotion_bin");
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, type);
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message,
              AllOf(HasSubstr("npx found no remotion package"), HasSubstr("npm i --save-exact")));
  EXPECT_THAT(ReadFile(bin / "npx-args"), StartsWith("--no remotion render src/index.ts Main "));
}

TEST(RemotionConnector, WithoutProjectDirARunSaysWhichSettingToSet) {
  TaskType type = MakeType("remotion_render", "remotion_render");
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, type);
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("set task_types.remotion_render.project_dir"));
}

TEST(RemotionConnector, AMissingEntryPointIsNamed) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(5)}},
                     project.Type({}, Json{{"entry_point", "src/Root.tsx"}}));
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("entry point src/Root.tsx not found"));
}

TEST(RemotionConnector, StopKillsTheWholeGroupWithinASecond) {
  Project project;
  testing::TempDir scratch;
  auto env = Mode("hang");
  env["FAKE_REMOTION_PID_FILE"] = (scratch / "pids").string();
  RunFixture fixture(Json{{"timeline", Timeline(100)}}, project.Type(env));
  RemotionConnector remotion;
  auto done = std::async(std::launch::async, [&] { return fixture.Execute(remotion); });
  Pids pids = WaitForPids(scratch / "pids");
  ASSERT_EQ(pids.pgid, pids.leader);
  ASSERT_TRUE(testing::ProcessAlive(pids.child));  // the "browser", deaf to SIGTERM
  ASSERT_EQ(GroupMembers(pids.pgid), 2);

  auto start = std::chrono::steady_clock::now();
  fixture.stop().request_stop();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto took = std::chrono::steady_clock::now() - start;

  EXPECT_LT(took, std::chrono::seconds(1));
  auto outcome = done.get();
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_EQ(outcome.error().message, "remotion render stopped");
  EXPECT_TRUE(testing::WaitUntil([&] { return GroupMembers(pids.pgid) == 0; }));
}

TEST(RemotionConnector, StopIsPromptEvenWhenTheCliIgnoresSigterm) {
  Project project;
  testing::TempDir scratch;
  auto env = Mode("hang");
  env["FAKE_REMOTION_PID_FILE"] = (scratch / "pids").string();
  env["FAKE_REMOTION_IGNORE_SIGTERM"] = "1";
  RunFixture fixture(Json{{"timeline", Timeline(100)}}, project.Type(env));
  RemotionConnector remotion;
  auto done = std::async(std::launch::async, [&] { return fixture.Execute(remotion); });
  Pids pids = WaitForPids(scratch / "pids");

  auto start = std::chrono::steady_clock::now();
  fixture.stop().request_stop();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(30)), std::future_status::ready);

  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_FALSE(done.get());
  EXPECT_TRUE(testing::WaitUntil([&] { return GroupMembers(pids.pgid) == 0; }));
}

TEST(RemotionConnector, ATimeoutStopsASlowRender) {
  Project project;  // the agent enforces a run's timeout by requesting ctx.stop at its deadline
  auto env = Mode("ok");
  env["FAKE_REMOTION_FRAME_MS"] = "60000";
  RunFixture fixture(Json{{"timeline", Timeline(100)}}, project.Type(env));
  RemotionConnector remotion;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  std::jthread timer([&](std::stop_token cancelled) {
    while (!cancelled.stop_requested() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    fixture.stop().request_stop();
  });

  auto outcome = fixture.Execute(remotion);

  EXPECT_LT(std::chrono::steady_clock::now() - deadline, std::chrono::seconds(1));
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(fixture.Log(), HasSubstr("remotion render stopped"));
}

TEST(RemotionConnector, StopBeforeStartRunsNothing) {
  Project project;
  RunFixture fixture(Json{{"timeline", Timeline(5)}}, project.Type(Mode("ok")));
  fixture.stop().request_stop();
  RemotionConnector remotion;

  auto outcome = fixture.Execute(remotion);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_FALSE(fs::exists(fixture.run_dir() / "props.json"));
}

TEST(RemotionConnector, ValidateKeepsTheOutputInsideTheRunDir) {
  Project project;
  RemotionConnector remotion;
  TaskType type = project.Type();

  for (Json output :
       {Json("../x.mp4"), Json("/tmp/x.mp4"), Json("a/../../x.mp4"), Json(""), Json("logs/x.mp4"),
        Json("props.json"), Json("dir/"), Json("."), Json("--codec=gif"), Json(5)}) {
    auto valid = remotion.Validate(type, Json{{"timeline", Timeline()}, {"output", output}});
    ASSERT_FALSE(valid) << output;
    EXPECT_EQ(valid.error().code, Errc::kInvalidArgument) << output;
    EXPECT_THAT(valid.error().message, HasSubstr("inside the run dir")) << output;
  }
  for (const char* output : {"out.mp4", "video/final.mp4", "./b.webm", "a/../c.gif"}) {
    auto valid = remotion.Validate(type, Json{{"timeline", Timeline()}, {"output", output}});
    EXPECT_TRUE(valid) << output << ": " << valid.error().message;
  }
}

TEST(RemotionConnector, ValidateChecksTheRestOfThePayload) {
  RemotionConnector remotion;
  TaskType type = MakeType("remotion_render", "remotion_render");
  auto problem = [&](Json payload) {
    auto valid = remotion.Validate(type, payload);
    return valid ? std::string() : valid.error().message;
  };

  EXPECT_EQ(problem(Json{{"timeline", Timeline()}}), "");
  EXPECT_EQ(problem(Json::object()), "");  // a composition that takes no props
  EXPECT_EQ(problem(Json{{"props", Json{{"title", "x"}}}, {"frames", 42}}), "");
  EXPECT_EQ(problem(Json{{"timeline", Timeline()}, {"frames", "10-"}}), "");
  EXPECT_THAT(problem(Json::array()), HasSubstr("must be a JSON object"));
  EXPECT_THAT(problem(Json{{"timeline", "x"}}), HasSubstr("timeline must be an object"));
  EXPECT_THAT(problem(Json{{"timeline", Json{{"fps", 0}}}}), HasSubstr("timeline.fps"));
  EXPECT_THAT(problem(Json{{"timeline", Json{{"durationInFrames", 1.5}}}}),
              HasSubstr("timeline.durationInFrames must be a positive integer"));
  EXPECT_THAT(problem(Json{{"timeline", Timeline()}, {"props", Json::object()}}),
              HasSubstr("not both"));
  EXPECT_THAT(problem(Json{{"composition", ""}}), HasSubstr("composition must be"));
  EXPECT_THAT(problem(Json{{"composition", "--gl=angle"}}), HasSubstr("composition must be"));
  for (Json frames : {Json("9-3"), Json("a"), Json(-1), Json("1,2"), Json(1.5)}) {
    EXPECT_THAT(problem(Json{{"frames", frames}}), HasSubstr("frames must be")) << frames;
  }
}

TEST(RemotionConnector, CheckSettingsNamesEachBadKey) {
  RemotionConnector remotion;
  TaskType type = MakeType("remotion_render", "remotion_render");
  type.settings = Json{{"project_dir", 5},
                       {"entry_point", ""},
                       {"composition", "-x"},
                       {"remotion_bin", Json::array()},
                       {"codec", "mpeg2"},
                       {"concurrency", "150%"},
                       {"extra_args", Json{"--gl=angle", 3}},
                       {"gl", "angle"}};

  auto problems = remotion.CheckSettings(type);

  std::vector<std::string> keys;
  for (const auto& p : problems) keys.push_back(p.key);
  std::sort(keys.begin(), keys.end());
  EXPECT_THAT(keys, ElementsAre("codec", "composition", "concurrency", "entry_point", "extra_args",
                                "gl", "project_dir", "remotion_bin"));
  for (const auto& p : problems) {
    if (p.key == "gl") EXPECT_EQ(p.message, "unknown setting");
    if (p.key == "codec") EXPECT_THAT(p.message, HasSubstr("h264, h265"));
  }
}

TEST(RemotionConnector, CheckSettingsAcceptsAFullConfig) {
  RemotionConnector remotion;
  TaskType type = MakeType("remotion_render", "remotion_render");
  for (Json concurrency : {Json(4), Json("4"), Json("50%")}) {
    type.settings = Json{{"project_dir", "/srv/video"},
                         {"entry_point", "src/index.ts"},
                         {"composition", "Main"},
                         {"remotion_bin", "remotion"},
                         {"codec", "h264"},
                         {"concurrency", concurrency},
                         {"extra_args", Json{"--gl=angle"}}};

    EXPECT_THAT(remotion.CheckSettings(type), IsEmpty()) << concurrency;
  }
  type.settings = Json::object();
  EXPECT_THAT(remotion.CheckSettings(type), IsEmpty());  // project_dir is checked at run time
  type.settings = Json{{"concurrency", 0}};
  EXPECT_THAT(remotion.CheckSettings(type), Not(IsEmpty()));
}

}  // namespace
}  // namespace gpuq::connectors
